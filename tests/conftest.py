"""Real infrastructure for tests, started by the tests themselves: the Tansu broker, a throwaway
PostgreSQL cluster, an S3 API server (moto). Nothing is mocked that can run here, and everything
listens on 127.0.0.1 only.

Fixtures:

- ``fleet_home`` (autouse): ``FLEET_HOME`` in a temp dir and no ambient ``FLEET_*`` settings, so a
  test never reads or writes the user's ``~/.fleet`` or picks up their environment.
- ``postgres_server`` (session): an admin ``postgresql+asyncpg://`` URL, from ``FLEET_TEST_POSTGRES_URL``
  or a throwaway cluster started with ``initdb``/``pg_ctl``.
- ``postgres_url``: a fresh, empty database on it, as a ``postgresql+asyncpg://`` URL.
- ``db_url``: parametrised ``sqlite`` / ``postgres``, so store tests run on both backends.
- ``kafka``: a fresh ``EmbeddedBroker`` with every catalogue topic and its ``.dlq``; tests may
  ``stop()`` and ``start()`` it on the same port (memory only: call ``ensure_topics`` again).
- ``kafka_session``: one broker shared by the session, for tests that never stop it.
- ``s3_server``: an S3 API (moto) on loopback, emptied for each test.
- ``ray_cluster`` (session): a local Ray head (``ray start --head``) on free ports; its address
  (``127.0.0.1:PORT``). Shared by the session: tests use unique model and application names.

A test that requests any of these (or runs the ``postgres`` half of ``db_url``) is marked
``integration`` automatically, so ``pytest -m "not integration"`` runs without infrastructure. A
fixture that picks infrastructure at run time (``request.getfixturevalue``) marks its params.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from sqlalchemy.engine import make_url

from fleet_core.broker import ensure_topics
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port, port_open
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV, EmbeddedRay
from support import backend
from support.aio import run_async

INFRASTRUCTURE_FIXTURES = frozenset(
    {"postgres_server", "postgres_url", "kafka", "kafka_session", "s3_server", "ray_cluster"}
)
PG_MISSING = "PostgreSQL not installed: apt-get install postgresql, or set FLEET_TEST_POSTGRES_URL"
# Settings the tests themselves read; every other FLEET_* variable is removed for each test.
KEEP_ENV = ("FLEET_TEST_", "FLEET_TANSU_BIN")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INFRASTRUCTURE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _skip_or_fail(reason: str) -> NoReturn:
    # CI installs every piece of infrastructure, so there a missing piece is a failure, not a skip.
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def fleet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's ~/.fleet, nor inherit their FLEET_* settings."""
    for name in list(os.environ):
        if name.startswith("FLEET_") and not name.startswith(KEEP_ENV):
            monkeypatch.delenv(name)
    home = tmp_path / "fleet-home"
    monkeypatch.setenv("FLEET_HOME", str(home))
    return home


# --------------------------------------------------------------------------- Kafka (Tansu)


def _started_broker(log_file: Path) -> EmbeddedBroker:
    broker = EmbeddedBroker(log_file=log_file)
    broker.start()
    try:
        run_async(ensure_topics(broker.bootstrap))
    except BaseException:
        broker.stop()
        raise
    return broker


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker with every catalogue topic and its .dlq. Tests may stop() and
    start() it on the same port; it is memory-only, so call ``ensure_topics`` after a restart.
    Its log is ``tmp_path / "tansu.log"``."""
    broker = _started_broker(tmp_path / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One broker for the whole session, with every catalogue topic: cheaper, but shared, so a
    test using it must not stop it and must not assume a topic is empty (use fresh keys or
    consumer groups)."""
    broker = _started_broker(tmp_path_factory.mktemp("kafka") / "tansu.log")
    yield broker
    broker.stop()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    os.environ.update(RAY_CLIENT_ENV)  # the test process is a Ray driver too
    head = EmbeddedRay(log_path=tmp_path_factory.mktemp("ray") / "ray-head.log")
    head.start()
    os.environ["FLEET_TEST_RAY_ADDRESS"] = head.address
    yield head.address
    os.environ.pop("FLEET_TEST_RAY_ADDRESS", None)
    # Disconnect this process's driver first: a driver whose head has died spends ~20 s at exit
    # retrying it (and, with auto-init on, would start a stray local cluster).
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head.stop()


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temp dir: initdb + pg_ctl, listening on 127.0.0.1 at a free port,
    its unix socket in the temp dir, so it never meets a cluster the OS package started. initdb
    refuses to run as root, so as root every command runs as the ``postgres`` user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.as_user: list[str] = []
        as_root = os.geteuid() == 0
        # As root the directory must be reachable by `postgres`: TMPDIR may be private to root.
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-pg-", dir="/tmp" if as_root else None))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = 0
        if as_root:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # cwd: the postgres user may not be able to enter the caller's directory (/root/...).
        return subprocess.run(
            [*self.as_user, *args], check=check, capture_output=True, timeout=120, cwd=self.dir
        )

    def start(self) -> str:
        """Create and start the cluster; returns its admin URL (``postgresql+asyncpg://``)."""
        self._run(
            str(self.bin / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            "--no-locale",
            "--no-sync",
        )
        for _ in range(3):  # the free port may be taken between choosing and binding it
            self.port = free_port()
            options = (
                f"-p {self.port} -h 127.0.0.1 -k {self.dir} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
            )
            started = self._run(
                str(self.bin / "pg_ctl"),
                *("-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options),
                "start",
                check=False,
            )
            if started.returncode == 0:
                return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stderr.decode(errors='replace')}\n{log}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False
                )
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) of a PostgreSQL server, with the right to create
    databases: FLEET_TEST_POSTGRES_URL (``postgresql://`` is accepted too), or a throwaway cluster
    started for this session and removed at its end."""
    external = os.environ.get("FLEET_TEST_POSTGRES_URL")
    if external:
        yield make_url(external).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        return
    bin_dir = backend.pg_bin_dir()
    if bin_dir is None:
        _skip_or_fail(PG_MISSING)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _skip_or_fail("running as root without a 'postgres' user: initdb refuses root. " + PG_MISSING)
        if shutil.which("runuser") is None:
            _skip_or_fail("running as root without `runuser`: initdb refuses root. " + PG_MISSING)
    server = ThrowawayPostgres(bin_dir)
    try:
        url = server.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as exc:
        server.stop()
        detail = getattr(exc, "stderr", None) or b""
        pytest.fail(f"could not start PostgreSQL: {exc} {detail.decode(errors='replace')}", pytrace=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for this test, as a SQLAlchemy ``postgresql+asyncpg://`` URL;
    dropped afterwards (even with connections still open)."""
    name = f"fleet_test_{uuid.uuid4().hex[:12]}"
    backend.admin_sql(postgres_server, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server).set(database=name)
    yield url.render_as_string(hide_password=False)
    backend.admin_sql(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on a fresh SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


# --------------------------------------------------------------------------- S3 (moto server)


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    # Port 0: the OS picks a free port at bind time, so there is no race for it.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_endpoint: str) -> dict[str, str]:
    """A real S3 API server on loopback, with no buckets: ``endpoint`` (URL), ``access_key``,
    ``secret_key`` (any are accepted) and ``region``."""
    # One server per session (its first request is slow); its state is emptied for each test.
    httpx.post(f"{_moto_endpoint}/moto-api/reset", timeout=30).raise_for_status()
    return {
        "endpoint": _moto_endpoint,
        "access_key": "test-access-key",
        "secret_key": "test-secret-key",
        "region": "us-east-1",
    }


# --------------------------------------------------------------------------- production pass


@pytest.fixture(scope="session", autouse=True)
def production_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """With FLEET_TEST_BACKEND=production (``make test-production``), services the tests start without
    naming their storage run on PostgreSQL and S3 (see ``support.backend``). Its S3 server is its
    own: ``s3_server`` resets moto for each test, which must not empty a running stack's bucket."""
    if not backend.production():
        yield
        return
    postgres = request.getfixturevalue("postgres_server")
    # A process of its own: moto's state is per process, and `s3_server` resets it for each test.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the production pass's S3 server (moto) did not start", pytrace=False)
            time.sleep(0.1)
        close = backend.configure(postgres, f"http://127.0.0.1:{port}")
        try:
            yield
        finally:
            close()
    finally:
        server.terminate()
        server.wait(timeout=30)
