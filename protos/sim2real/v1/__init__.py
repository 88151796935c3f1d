"""Generated protobuf and gRPC stubs of the sim2real.v1 wire contract (protos/generate.py):
the policy service (policy.proto) and the log schemas (log.proto).

Imports nothing else of sim2real; every room that speaks the wire or the log may import it.
"""
