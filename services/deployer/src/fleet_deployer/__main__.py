"""``python -m fleet_deployer [serve|migrate]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fleet_core.db import Database
from fleet_core.log import configure_logging
from fleet_deployer.settings import DeployerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_deployer", description="ModelFleet deployer service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service and event consumers (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    settings = DeployerSettings()
    configure_logging("deployer", settings.log_level, settings.log_json)

    if args.command == "migrate":
        from fleet_deployer.app import MIGRATIONS

        async def migrate() -> None:
            db = Database(settings.resolved_database_url("deployer"))
            await db.migrate(MIGRATIONS)
            await db.dispose()

        asyncio.run(migrate())
        return 0

    import uvicorn

    from fleet_deployer.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
