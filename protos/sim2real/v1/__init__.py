"""Generated protobuf and gRPC stubs of the sim2real.v1 wire contract (protos/generate.py)."""
