"""``python -m fleet_monitor [serve|migrate]``."""

from __future__ import annotations

import sys

from fleet_core.service import service_main
from fleet_monitor.settings import MonitorSettings

if __name__ == "__main__":
    sys.exit(service_main("monitor", MonitorSettings, "fleet_monitor.app"))
