"""fleet_sdk: the ModelFleet Python client and the ``fleet`` command line."""

from fleet_sdk.client import Client
from fleet_sdk.errors import FleetAPIError, FleetUnavailable

__all__ = ["Client", "FleetAPIError", "FleetUnavailable"]
__version__ = "0.1.0"
