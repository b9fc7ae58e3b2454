"""ModelFleet gateway: Open Inference Protocol v2 in front of Ray Serve deployments."""

__version__ = "0.1.0"
