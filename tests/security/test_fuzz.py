"""A fuzz pass over every service's OpenAPI (schemathesis): whatever a caller sends, no route
answers 5xx and none takes 2 s. Each service runs for real on a loopback port (SQLite, no
broker: its events stay in the outbox), called with an admin token so the fuzzer gets past
authentication to the code behind it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import RouteArm
from fleet_sdk.embedded_broker import free_port
from support.deployer import FakeServingControl
from support.gateway import FakeBackend, route, snapshot
from support.registry import SECRET

pytestmark = pytest.mark.slow

SLOW_S = 2.0
EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CLOSED = "127.0.0.1:1"
ENDLESS = {"GET /v1/stream"}
"""Server-sent events: an answer that never ends by design (tests/unit/monitor covers its access)."""


class ServedApp:
    """An app (its lifespan included) under uvicorn in a thread of its own, on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the service did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def until_ready(self, timeout_s: float = 60.0) -> ServedApp:
        """Wait until ``/readyz`` says ready, as a load balancer would before sending traffic: a
        deployer still reconciling answers 503 there by design, which is not a server error."""
        deadline = time.monotonic() + timeout_s
        while httpx.get(f"{self.url}/readyz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url} was not ready within {timeout_s:.0f} s")
            time.sleep(0.1)
        return self


def _common(home: Path, **extra: Any) -> dict[str, Any]:
    return {"home": home, "jwt_secret": SECRET, "kafka_bootstrap": CLOSED, **extra}


@pytest.fixture(scope="module")
def admin() -> dict[str, str]:
    token, _, _ = TokenAuthority(SECRET).issue("fuzzer", Role.ADMIN, ["*"], ttl=None)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def registry_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    from fleet_registry.app import create_app
    from fleet_registry.settings import RegistrySettings

    home = tmp_path_factory.mktemp("registry")
    with ServedApp(create_app(RegistrySettings(**_common(home, consume_events=False)))) as served:
        yield served


def _schema(served: ServedApp) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


@pytest.fixture(scope="module")
def registry_schema(registry_app: ServedApp) -> Any:
    return _schema(registry_app)


@pytest.fixture(scope="module")
def deployer_app(tmp_path_factory: pytest.TempPathFactory, registry_app: ServedApp) -> Iterator[ServedApp]:
    from fleet_deployer.app import create_app
    from fleet_deployer.settings import DeployerSettings

    home = tmp_path_factory.mktemp("deployer")
    config = DeployerSettings(
        **_common(home, consume_events=False, registry_url=registry_app.url, ray_address="fake://ray")
    )
    with ServedApp(create_app(config, serving_control=FakeServingControl())) as served:
        yield served.until_ready()


@pytest.fixture(scope="module")
def deployer_schema(deployer_app: ServedApp) -> Any:
    return _schema(deployer_app)


@pytest.fixture(scope="module")
def gateway_schema(registry_app: ServedApp, deployer_app: ServedApp) -> Iterator[Any]:
    from fleet_gateway.app import create_app
    from fleet_gateway.settings import GatewaySettings

    # The repository extension's routes reach the deployer (its routes still come injected).
    config = GatewaySettings(
        jwt_secret=SECRET,
        kafka_bootstrap=CLOSED,
        deployer_url=deployer_app.url,
        registry_url=registry_app.url,
        follow_rollouts=False,
        feedback_timeout_s=0.5,
        grpc_port=0,
    )
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], team="risk"))
    with ServedApp(create_app(config, backend=FakeBackend(), routes=routes)) as served:
        yield _schema(served)


@pytest.fixture(scope="module")
def monitor_schema(tmp_path_factory: pytest.TempPathFactory, registry_app: ServedApp) -> Iterator[Any]:
    from fleet_monitor.app import create_app
    from fleet_monitor.settings import MonitorSettings

    home = tmp_path_factory.mktemp("monitor")
    config = MonitorSettings(
        **_common(home, consume_events=False, registry_url=registry_app.url, tune_gc=False)
    )
    with ServedApp(create_app(config)) as served:
        yield _schema(served)


@pytest.fixture(scope="module")
def retrainer_schema(tmp_path_factory: pytest.TempPathFactory, registry_app: ServedApp) -> Iterator[Any]:
    from fleet_retrainer.app import create_app
    from fleet_retrainer.settings import RetrainerSettings
    from fleet_retrainer.trainer import LocalTrainer

    home = tmp_path_factory.mktemp("retrainer")
    config = RetrainerSettings(
        **_common(home, consume_events=False, registry_url=registry_app.url, monitor_url="http://127.0.0.1:1")
    )
    with ServedApp(create_app(config, trainer=LocalTrainer())) as served:
        yield _schema(served)


def _check(case: Any, admin: dict[str, str]) -> None:
    started = time.monotonic()
    response = case.call(headers=admin, timeout=30)
    elapsed = time.monotonic() - started
    case.validate_response(response, checks=[not_a_server_error])
    assert elapsed < SLOW_S, f"{case.method} {case.formatted_path} took {elapsed:.2f} s"


def _fuzz(schema: Any, admin: dict[str, str]) -> None:
    """Every operation, a few generated cases each; all failures reported together."""
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in ENDLESS:
            continue
        operations += 1

        @EXAMPLES
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            _check(case, admin)

        try:
            run()
        except Exception as exc:  # hypothesis re-raises the smallest failing case
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:600]}")
    assert operations > 0
    assert not failures, "\n\n".join(failures)


def test_the_registry_never_answers_5xx_or_slowly(registry_schema: Any, admin: dict[str, str]) -> None:
    _fuzz(registry_schema, admin)


def test_the_deployer_never_answers_5xx_or_slowly(deployer_schema: Any, admin: dict[str, str]) -> None:
    _fuzz(deployer_schema, admin)


def test_the_gateway_never_answers_5xx_or_slowly(gateway_schema: Any, admin: dict[str, str]) -> None:
    _fuzz(gateway_schema, admin)


def test_the_monitor_never_answers_5xx_or_slowly(monitor_schema: Any, admin: dict[str, str]) -> None:
    _fuzz(monitor_schema, admin)


def test_the_retrainer_never_answers_5xx_or_slowly(retrainer_schema: Any, admin: dict[str, str]) -> None:
    _fuzz(retrainer_schema, admin)
