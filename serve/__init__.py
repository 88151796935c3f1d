"""sim2real.serve: the gRPC policy server (onnxruntime) and its client library."""
