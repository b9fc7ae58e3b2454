"""``python -m fleet_retrainer [serve|migrate]``."""

from __future__ import annotations

import argparse
import sys

from fleet_core.log import configure_logging
from fleet_core.service import migrate_database, serve_http
from fleet_retrainer.settings import RetrainerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_retrainer", description="ModelFleet retrainer service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service and event consumers (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    settings = RetrainerSettings()
    configure_logging("retrainer", settings.log_level, settings.log_json)

    from fleet_retrainer.app import MIGRATIONS, create_app

    if args.command == "migrate":
        migrate_database(settings.resolved_database_url("retrainer"), MIGRATIONS)
        return 0
    serve_http(create_app(settings), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
