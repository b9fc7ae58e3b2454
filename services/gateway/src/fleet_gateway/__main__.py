"""``python -m fleet_gateway [serve]``: one uvicorn worker (uvloop + httptools when installed)."""

from __future__ import annotations

import argparse
import os
import sys

# Must be set before Ray is imported anywhere in this process: it roughly doubles handle throughput.
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")

from fleet_core.log import configure_logging
from fleet_core.service import serve_http
from fleet_gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_gateway", description="ModelFleet inference gateway")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service (default)")
    parser.parse_args(argv)
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)

    from fleet_gateway.app import create_app

    serve_http(create_app(settings), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
