"""The storage the services under test run on.

By default (``FLEET_TEST_BACKEND`` unset or ``embedded``) a service gets what the embedded stack
uses: a SQLite file in the test's temp dir, ``file://`` artifacts and a ``file://`` lake.

With ``FLEET_TEST_BACKEND=production`` (``make test-production``) every service that the
integration and end-to-end tests start without naming its storage runs as production runs it:

- its own fresh PostgreSQL database on the session's throwaway server (``postgres_server``);
- registry artifacts and the monitor's inference lake under a fresh prefix of one bucket of an S3
  API server (moto, on loopback, started for the session and never reset under a running stack);
- for whole stacks, ``FLEET_MODE=production``, so placeholder secrets are refused as in a cluster.

``tests/conftest.py`` calls :func:`configure` once per session; helpers and fixtures then ask
:func:`database_url`, :func:`artifact_settings`, :func:`lake_settings` or :func:`stack_env`.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from support.aio import run_async

BACKEND_ENV = "FLEET_TEST_BACKEND"
BUCKET = "fleet-production-pass"
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key"
S3_REGION = "us-east-1"


def pg_bin_dir() -> Path | None:
    """Where PostgreSQL's server programs are (initdb, pg_ctl, psql): Debian's newest, else PATH."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parents[1].name)
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def production() -> bool:
    value = os.environ.get(BACKEND_ENV, "embedded").strip().lower()
    if value not in {"embedded", "production"}:
        raise ValueError(f"{BACKEND_ENV} must be 'embedded' or 'production', not {value!r}")
    return value == "production"


@dataclass
class _Production:
    postgres_admin_url: str
    s3_endpoint: str
    created: list[str] = field(default_factory=list)


_state: _Production | None = None


def configure(postgres_admin_url: str, s3_endpoint: str) -> Callable[[], None]:
    """Point the helpers at the session's servers; returns the clean-up (drop every database)."""
    global _state
    _state = _Production(postgres_admin_url, s3_endpoint)
    run_async(_make_bucket(s3_endpoint))

    def close() -> None:
        global _state
        state, _state = _state, None
        if state is not None:
            for name in state.created:
                admin_sql(state.postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return close


def _require() -> _Production:
    if _state is None:
        raise RuntimeError(f"{BACKEND_ENV}=production but the session's servers are not configured")
    return _state


def admin_sql(server_url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE) on a PostgreSQL server."""
    run_async(_admin(server_url, sql))


async def _admin(server_url: str, sql: str) -> None:
    # Through SQLAlchemy, so the URL's query options mean what they mean to the code under test.
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _make_bucket(endpoint: str) -> None:
    from minio import Minio

    client = Minio(
        endpoint.removeprefix("http://"),
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        region=S3_REGION,
        secure=False,
    )
    if not client.bucket_exists(bucket_name=BUCKET):
        client.make_bucket(bucket_name=BUCKET)


def _create_database(state: _Production, name: str) -> None:
    admin_sql(state.postgres_admin_url, f'CREATE DATABASE "{name}"')
    state.created.append(name)


def _new_database(state: _Production, label: str) -> str:
    name = f"fleet_{label}_{uuid.uuid4().hex[:10]}"
    _create_database(state, name)
    return name


def database_url(tmp: Path, service: str) -> str:
    """A fresh database for one service instance: a SQLite file, or a new PostgreSQL database."""
    if not production():
        return f"sqlite+aiosqlite:///{tmp / f'{service}.db'}"
    state = _require()
    name = _new_database(state, service)
    return make_url(state.postgres_admin_url).set(database=name).render_as_string(hide_password=False)


def s3_settings() -> dict[str, Any]:
    """The ``s3_*`` settings of a service that reads or writes the production pass's bucket."""
    if not production():
        return {}
    return {
        "s3_endpoint": _require().s3_endpoint,
        "s3_access_key": S3_ACCESS_KEY,
        "s3_secret_key": S3_SECRET_KEY,
        "s3_region": S3_REGION,
        "s3_secure": False,
    }


def _prefix(kind: str) -> str:
    return f"s3://{BUCKET}/{kind}-{uuid.uuid4().hex[:10]}"


def artifact_settings() -> dict[str, Any]:
    """Registry settings for its artifact store: none (FLEET_HOME files) or a fresh S3 prefix."""
    if not production():
        return {}
    return {"artifact_uri": _prefix("artifacts"), **s3_settings()}


def lake_settings() -> dict[str, Any]:
    """Monitor settings for its inference lake: none (FLEET_HOME files) or a fresh S3 prefix."""
    if not production():
        return {}
    return {"lake_uri": _prefix("lake"), **s3_settings()}


def stack_env() -> dict[str, str]:
    """Environment for a whole stack (``Stack.start(env=...)`` or ``fleet up``): empty when
    embedded; in production, a database per service on PostgreSQL (``{service}`` in
    FLEET_DATABASE_URL), artifacts and lake on S3, production mode with real secrets."""
    if not production():
        return {}
    state = _require()
    stack = uuid.uuid4().hex[:8]
    for service in ("registry", "deployer", "monitor", "retrainer"):
        _create_database(state, f"fleet_{stack}_{service}")
    url = make_url(state.postgres_admin_url).set(database=f"fleet_{stack}_SERVICE")
    return {
        "FLEET_MODE": "production",
        "FLEET_PII_SALT": secrets.token_urlsafe(24),
        "FLEET_DATABASE_URL": url.render_as_string(hide_password=False).replace("SERVICE", "{service}"),
        "FLEET_ARTIFACT_URI": f"s3://{BUCKET}/stack-{stack}/artifacts",
        "FLEET_LAKE_URI": f"s3://{BUCKET}/stack-{stack}/lake",
        "FLEET_S3_ENDPOINT": state.s3_endpoint,
        "FLEET_S3_ACCESS_KEY": S3_ACCESS_KEY,
        "FLEET_S3_SECRET_KEY": S3_SECRET_KEY,
        "FLEET_S3_REGION": S3_REGION,
        "FLEET_S3_SECURE": "false",
    }
