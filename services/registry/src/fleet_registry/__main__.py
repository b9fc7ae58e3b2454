"""``python -m fleet_registry [serve|migrate|issue-token|verify]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta

from fleet_core.auth import Role
from fleet_core.log import configure_logging
from fleet_core.service import migrate_database, serve_http
from fleet_registry.settings import RegistrySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_registry", description="ModelFleet registry service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    tok = sub.add_parser("issue-token", help="mint a token with FLEET_JWT_SECRET (bootstrap an admin)")
    tok.add_argument("--subject", default="admin")
    tok.add_argument("--role", default="admin", choices=[r.value for r in Role])
    tok.add_argument("--team", action="append", default=[], help="repeatable; '*' for all teams")
    tok.add_argument("--ttl-days", type=float, default=None, help="default: never expires")
    check = sub.add_parser("verify", help="check every artifact against its registered size and SHA-256")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    settings = RegistrySettings()

    if args.command == "issue-token":
        return _issue_token(settings, args.subject, Role(args.role), args.team or ["*"], args.ttl_days)

    if args.command == "verify":
        return _verify(settings, as_json=args.json)

    configure_logging("registry", settings.log_level, settings.log_json)
    from fleet_registry.app import MIGRATIONS, create_app

    if args.command == "migrate":
        migrate_database(settings.resolved_database_url("registry"), MIGRATIONS)
        return 0
    serve_http(create_app(settings), settings.host, settings.port)
    return 0


def _issue_token(
    settings: RegistrySettings, subject: str, role: Role, teams: list[str], ttl_days: float | None
) -> int:
    """Mint a token with FLEET_JWT_SECRET and record it in the registry's database (so it can be
    listed and revoked like any other); refuses when the database is not migrated."""
    from fleet_core.db import Database
    from fleet_registry.store import RegistryStore
    from fleet_registry.tokens import BOOTSTRAP, issue_token

    async def issue() -> str:
        db = Database(settings.resolved_database_url("registry"))
        try:
            token, _ = await issue_token(
                RegistryStore(db),
                settings.token_authority(),
                BOOTSTRAP,
                subject=subject,
                role=role,
                teams=teams,
                ttl=timedelta(days=ttl_days) if ttl_days else None,
            )
        finally:
            await db.dispose()
        return token

    try:
        print(asyncio.run(issue()))
    except Exception as exc:  # no database, not migrated: nothing was issued
        print(
            f"issue-token: could not record the token ({type(exc).__name__}: {exc}); "
            "run `python -m fleet_registry migrate` first",
            file=sys.stderr,
        )
        return 1
    return 0


def _verify(settings: RegistrySettings, *, as_json: bool) -> int:
    from fleet_registry.verify import verify_artifacts

    report = asyncio.run(verify_artifacts(settings))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for p in report.problems:
            print(f"{p.kind} {p.name} v{p.version}: {p.reason} ({p.uri})")
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.model_versions} model versions, {report.dataset_versions} dataset files: {verdict}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
