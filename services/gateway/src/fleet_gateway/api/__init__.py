"""The gateway's REST routers: Open Inference Protocol v2 and feedback."""
