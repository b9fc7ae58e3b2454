"""``python -m fleet_retrainer [serve|migrate]``."""

from __future__ import annotations

import sys

from fleet_core.service import service_main
from fleet_retrainer.settings import RetrainerSettings

if __name__ == "__main__":
    sys.exit(service_main("retrainer", RetrainerSettings, "fleet_retrainer.app"))
