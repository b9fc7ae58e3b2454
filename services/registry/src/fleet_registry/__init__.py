"""fleet_registry: the ModelFleet model registry service (port 8001)."""

__version__ = "0.1.0"
