"""``python -m fleet_gateway [serve]``: one uvicorn worker (uvloop + httptools when installed)."""

from __future__ import annotations

import argparse
import os
import sys

# Must be set before Ray is imported anywhere in this process: it roughly doubles handle throughput.
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")

from fleet_core.log import configure_logging
from fleet_gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_gateway", description="ModelFleet inference gateway")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service (default)")
    parser.parse_args(argv)
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)

    import uvicorn

    from fleet_gateway.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        loop="auto",
        http="auto",
        workers=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
