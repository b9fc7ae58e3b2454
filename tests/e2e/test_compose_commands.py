"""docker-compose.yml, run without Docker: every ModelFleet container's command (the image's
ENTRYPOINT and CMD, or the compose override) with the environment compose gives it, as processes
on loopback, to a first prediction.

No Docker engine runs here. What the engine would add (images, a network, DNS) is replaced by the
smallest honest stand-in: each compose host name (`kafka`, `postgres`, `minio`, `ray-head`, the
services) is rewritten to a loopback address, and every other value is compose's own, `.env`
interpolation included. So this runs, for real: the PostgreSQL init script (a role and database
per service), the one-shot `topics` and `*-migrate` jobs, production mode with its secrets, Ray
token authentication, the three Ray drivers joining the head as zero-CPU nodes through
`fleet_core.raynode`, artifacts and the lake on an S3 API, the bootstrap admin token, and a model
registered, deployed and answered through the gateway. Then every container is stopped as
compose stops it (SIGTERM) and must exit cleanly, its Ray node gone."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sqlalchemy.engine import make_url

from fleet_sdk.client import Client
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from fleet_sdk.embedded_ray import EmbeddedRay
from support import backend
from support.deploy import ROOT, cmd, dockerfile, entrypoint, image_env
from support.raylets import raylet_running

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.extended, pytest.mark.timeout(600)]

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = ("registry", "deployer", "gateway", "monitor", "retrainer")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([?-])([^}]*))?\}")
PORTS = {"registry": 8001, "deployer": 8002, "gateway": 8000, "monitor": 8003, "retrainer": 8004}
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
# The one departure from compose's environment: the embedded broker (Tansu) that stands in for the
# `kafka` container speaks PLAINTEXT only (it can neither serve TLS nor create SASL users here), so
# the services' SASL settings are left out, and the `kafka-principals` job (Kafka's own tools) is
# not run. tests/unit/deploy/test_compose.py checks those settings and ACLs statically.
KAFKA_SECURITY = re.compile(r"^FLEET_KAFKA_(SECURITY_PROTOCOL|SASL_|SSL_)")


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against a `.env`."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.groups()
        if dotenv.get(name):
            return dotenv[name]
        if operator == "?":
            raise AssertionError(f"compose would refuse to start: {rest}")
        return rest if operator == "-" else ""

    return INTERPOLATION.sub(one, value)


def image_of(name: str) -> Path:
    """The Dockerfile of a compose service's image (`${FLEET_IMAGE_REGISTRY}/<image>:<tag>`)."""
    return dockerfile(COMPOSE["services"][name]["image"].rsplit("/", 1)[-1].split(":", 1)[0])


@dataclass
class Loopback:
    """Where each compose `host:port` lives on this machine."""

    hosts: dict[str, str]

    def address(self, service: str) -> str:
        return self.hosts[f"{service}:{PORTS[service]}"]

    def rewrite(self, value: str) -> str:
        for name, address in self.hosts.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", address, value)
        return value


class ComposeProject:
    """The compose services run as processes, with compose's environment and images' commands."""

    def __init__(self, dotenv: dict[str, str], loopback: Loopback, home: Path) -> None:
        self.dotenv = dotenv
        self.loopback = loopback
        self.home = home
        self.logs = home / "logs"
        self.logs.mkdir(parents=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_with: dict[str, dict[str, str]] = {}

    def environment(self, name: str) -> dict[str, str]:
        service = COMPOSE["services"][name]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "RAY_"))}
        env |= image_env(image_of(name))
        env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        for key, value in (service.get("environment") or {}).items():
            if KAFKA_SECURITY.match(key):
                continue
            env[key] = self.loopback.rewrite(interpolate(str(value), self.dotenv))
        # What a container has to itself: a home, the port compose maps, its node's address.
        env["FLEET_HOME"] = str(self.home / name)
        env["FLEET_HOST"] = "127.0.0.1"
        if name in PORTS:
            env["FLEET_PORT"] = self.loopback.address(name).rsplit(":", 1)[1]
        if "FLEET_GRPC_PORT" in env:  # the gateway's second port (8081 in its image)
            env["FLEET_GRPC_PORT"] = str(free_port())
        env["FLEET_RAY_NODE_IP"] = "127.0.0.1"
        env["FLEET_RAY_NODE_MANAGER_PORT"] = str(free_port())
        # Containers have a network namespace each; processes sharing one need distinct Ray ports.
        env["FLEET_RAY_START_ARGS"] = " ".join(
            f"--{option}={free_port()}"
            for option in (
                "object-manager-port",
                "dashboard-agent-listen-port",
                "metrics-export-port",
                "runtime-env-agent-port",
                "dashboard-agent-grpc-port",
            )
        )
        env["FLEET_LOG_JSON"] = "false"
        return env

    def command(self, name: str) -> list[str]:
        service, image = COMPOSE["services"][name], image_of(name)
        # Compose's rules: `entrypoint` replaces the image's (and drops its CMD), `command` its CMD.
        if "entrypoint" in service:
            words = [*service["entrypoint"], *service.get("command", [])]
        else:
            words = [*entrypoint(image), *service.get("command", cmd(image))]
        return [sys.executable if w == "python" else w for w in words]

    def run_job(self, name: str) -> None:
        result = subprocess.run(
            self.command(name), env=self.environment(name), capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"

    def start(self, name: str) -> None:
        env = self.started_with[name] = self.environment(name)
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                self.command(name), env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, name: str, timeout_s: float = 240.0) -> None:
        url = f"http://{self.loopback.address(name)}/readyz"
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            process = self.processes[name]
            assert process.poll() is None, f"{name} exited {process.returncode}: {self.log(name)}"
            try:
                response = httpx.get(url, timeout=5)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(1)
        raise AssertionError(f"{name} not ready in {timeout_s:.0f} s: {last}\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self, name: str, timeout_s: float = 60.0) -> int | None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                return None
        return process.returncode


def psql(postgres_url: str) -> tuple[str, dict[str, str]]:
    bin_dir = backend.pg_bin_dir()
    assert bin_dir is not None
    url = make_url(postgres_url)
    return str(bin_dir / "psql"), {
        "PGHOST": str(url.host),
        "PGPORT": str(url.port),
        "POSTGRES_USER": "postgres",
    }


@pytest.fixture
def project(
    tmp_path: Path, postgres_server: str, s3_server: dict[str, str], kafka: EmbeddedBroker
) -> Iterator[ComposeProject]:
    if backend.production():
        pytest.skip("production-shaped already; runs in the default pass")
    dotenv = {
        "FLEET_IMAGE_TAG": "test",
        "FLEET_JWT_SECRET": secrets.token_hex(32),
        "FLEET_PII_SALT": secrets.token_hex(16),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "KAFKA_ADMIN_PASSWORD": secrets.token_hex(16),
        **{f"FLEET_{s.upper()}_KAFKA_PASSWORD": secrets.token_hex(16) for s in SERVICES},
        "FLEET_S3_ACCESS_KEY": s3_server["access_key"],
        "FLEET_S3_SECRET_KEY": s3_server["secret_key"],
        **{
            f"FLEET_{s.upper()}_DB_PASSWORD": secrets.token_hex(12)
            for s in ("registry", "deployer", "monitor", "retrainer")
        },
    }
    # The postgres container's init script, run against the session's server.
    psql_bin, pg_env = psql(postgres_server)
    init = subprocess.run(
        ["bash", str(ROOT / "deploy" / "compose" / "postgres" / "init-databases.sh")],
        env={**os.environ, **pg_env, **dotenv, "PATH": f"{Path(psql_bin).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    # The minio-init job: the bucket compose's services use.
    from minio import Minio

    Minio(
        s3_server["endpoint"].removeprefix("http://"), access_key="k", secret_key="s", secure=False
    ).make_bucket(bucket_name="modelfleet")
    # The compose `ray-head` service on loopback, with its token authentication.
    head = EmbeddedRay(
        num_cpus=2,
        log_path=tmp_path / "ray-head.log",
        env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": dotenv["RAY_AUTH_TOKEN"]},
    )
    head.start()
    hosts = {
        "kafka:9092": kafka.bootstrap,
        "postgres:5432": f"{make_url(postgres_server).host}:{make_url(postgres_server).port}",
        "minio:9000": s3_server["endpoint"].removeprefix("http://"),
        "ray-head:6379": head.address,
        "alertmanager:9093": f"127.0.0.1:{free_port()}",
        **{f"{name}:{port}": f"127.0.0.1:{free_port()}" for name, port in PORTS.items()},
    }
    loopback = Loopback(hosts)
    compose = ComposeProject(dotenv, loopback, tmp_path / "containers")
    try:
        yield compose
    finally:
        for name in reversed(list(compose.processes)):
            compose.stop(name)
        head.stop()
        for service in ("registry", "deployer", "monitor", "retrainer"):
            backend.admin_sql(postgres_server, f'DROP DATABASE IF EXISTS "{service}" WITH (FORCE)')
            backend.admin_sql(postgres_server, f'DROP ROLE IF EXISTS "{service}"')


def test_compose_services_start_from_their_own_commands_and_serve_a_prediction(
    project: ComposeProject,
) -> None:
    # The one-shot jobs the services depend on, in compose's dependency order.
    project.run_job("topics")
    for service in ("registry", "deployer", "monitor", "retrainer"):
        project.run_job(f"{service}-migrate")
    # In compose's depends_on order, each waiting for the one before to be healthy (here: ready).
    for service in SERVICES:
        dependencies = set(COMPOSE["services"][service]["depends_on"]) & set(SERVICES)
        assert dependencies <= set(project.processes), f"{service} depends on {dependencies}"
        project.start(service)
        project.wait_ready(service)

    # The bootstrap admin token, as deploy/compose/README.md gets it from the registry container.
    issued = subprocess.run(
        [sys.executable, "-m", "fleet_registry", "issue-token", "--subject", "ops", "--ttl-days", "1"],
        env=project.environment("registry"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    url = {service: f"http://{project.loopback.address(service)}" for service in SERVICES}
    client = Client(
        registry_url=url["registry"],
        token=token,
        gateway_url=url["gateway"],
        deployer_url=url["deployer"],
        monitor_url=url["monitor"],
        retrainer_url=url["retrainer"],
    )
    X = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.8, 2.7, 5.1, 1.9]] * 10,
        columns=FEATURES,
    )
    y = pd.Series([0, 0, 2, 2] * 10)
    version = client.register_sklearn(
        "iris", LogisticRegression(max_iter=500).fit(X, y), X, y, team="research", deploy_policy="direct"
    )
    assert version["artifact_uri"].startswith("s3://modelfleet/artifacts/")

    row = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
    deadline = time.monotonic() + 180
    last: Any = None
    while time.monotonic() < deadline:
        last = httpx.post(
            f"{url['gateway']}/v2/models/iris/infer",
            json={"inputs": row},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if last.status_code == 200:
            break
        time.sleep(1)
    assert last is not None and last.status_code == 200, (
        f"{last.status_code} {last.text}\n{project.log('deployer')}"
    )
    assert last.headers["X-Fleet-Model-Version"] == "1"

    # Compose stops containers with SIGTERM and kills them after a grace period: each stops within
    # it (uvicorn finishes, then re-raises the signal, hence 143 through raynode or -15 directly),
    # and each driver's Ray node (its raylet) is gone with it.
    for service in reversed(SERVICES):
        assert project.stop(service) in {0, 143, -signal.SIGTERM}, f"{service}:\n{project.log(service)}"
    for service in ("deployer", "gateway", "retrainer"):
        log = (project.logs / f"{service}.log").read_text(errors="replace")
        assert "raynode: joined" in log, log[-4000:]
        assert not raylet_running(int(project.started_with[service]["FLEET_RAY_NODE_MANAGER_PORT"]))
