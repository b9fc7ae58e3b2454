"""Generated gRPC modules of the Open Inference Protocol (``grpc_predict_v2.proto``); do not edit.

Regenerate with ``make grpc-stubs`` (``services/gateway/scripts/generate_grpc.py``).
"""
