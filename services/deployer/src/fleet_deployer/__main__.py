"""``python -m fleet_deployer [serve|migrate]``."""

from __future__ import annotations

import sys

from fleet_core.service import service_main
from fleet_deployer.settings import DeployerSettings

if __name__ == "__main__":
    sys.exit(service_main("deployer", DeployerSettings, "fleet_deployer.app"))
