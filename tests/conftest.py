"""Real infrastructure for tests, started by the tests themselves: the Tansu broker, a throwaway
PostgreSQL cluster, an S3 API server (moto). Nothing is mocked that can run here."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_core.broker import ensure_topics
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port


@pytest.fixture(autouse=True)
def _isolated_fleet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's ~/.fleet."""
    home = tmp_path / "fleet-home"
    monkeypatch.setenv("FLEET_HOME", str(home))
    monkeypatch.delenv("FLEET_TOKEN", raising=False)
    monkeypatch.delenv("FLEET_REGISTRY_URL", raising=False)
    return home


# --------------------------------------------------------------------------- Kafka (Tansu)


@pytest.fixture
def kafka() -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker with every catalogue topic and its .dlq. Tests may stop() and
    start() it on the same port; it is memory-only, so call ``ensure_topics`` after a restart."""
    broker = EmbeddedBroker()
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    yield broker
    broker.stop()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class _ThrowawayPostgres:
    """initdb + pg_ctl in a temp dir on a loopback port; as root, runs as the `postgres` user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c full_page_writes=off",
            "start",
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (``postgresql://``, admin rights): FLEET_TEST_POSTGRES_URL or a
    throwaway cluster started here."""
    external = os.environ.get("FLEET_TEST_POSTGRES_URL")
    if external:
        yield external.replace("+asyncpg", "")
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL not installed: apt-get install postgresql, or set FLEET_TEST_POSTGRES_URL")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL (initdb refuses root)")
    server = _ThrowawayPostgres(bin_dir)
    try:
        url = server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}")
    yield url
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database as a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


# --------------------------------------------------------------------------- S3 (moto server)


@pytest.fixture
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3 API server on loopback; any credentials are accepted."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.monotonic() + 10
    import httpx

    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield {"endpoint": f"http://127.0.0.1:{port}", "access_key": "test-key", "secret_key": "test-secret"}
    server.stop()
