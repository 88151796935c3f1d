"""Serving: the gRPC policy server (onnxruntime model repository, safety, metrics,
TLS/auth, the step recorder), its client library, and the shipped policies (policies/).

May import logformat and v1 only, so a server host needs neither torch nor MuJoCo.
"""
