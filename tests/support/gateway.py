"""Run the gateway in-process for tests: routes injected, an in-memory serving backend, tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import InferenceFeedback, OutcomeRecorded, RouteArm, RouteTable
from fleet_core.schemas import FieldSpec, Signature
from fleet_core.serving import ModelRoute, ModelSpec, Placement, RoutesSnapshot, ServedVersion
from fleet_gateway.app import create_app
from fleet_gateway.backend import ModelFailed
from fleet_gateway.settings import GatewaySettings

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
CLOSED_PORT = "127.0.0.1:1"

SIGNATURE = Signature(
    inputs=[
        FieldSpec(name="age", type="int", minimum=0, maximum=130),
        FieldSpec(name="income", type="float"),
        FieldSpec(name="email", type="string", pii=True),
    ],
    outputs=[FieldSpec(name="score", type="float")],
)


def spec(model: str, version: int, *, team: str = "risk", signature: Signature = SIGNATURE) -> ModelSpec:
    return ModelSpec(
        model=model,
        version=version,
        team=team,
        flavor="sklearn",
        task="regression",
        artifact_uri=f"file:///tmp/{model}-{version}.skops",
        sha256="0" * 64,
        size_bytes=1,
        signature=signature,
    )


def route(
    model: str,
    arms: list[RouteArm],
    *,
    team: str = "risk",
    revision: int = 1,
    signature: Signature = SIGNATURE,
    placement: Callable[[str, int], Placement] | None = None,
) -> ModelRoute:
    versions = sorted({a.version for a in arms})
    return ModelRoute(
        model=model,
        team=team,
        table=RouteTable(model=model, revision=revision, arms=arms),
        versions=[
            ServedVersion(
                spec=spec(model, v, team=team, signature=signature),
                placement=placement(model, v) if placement else Placement.pool(),
                state="ready",
            )
            for v in versions
        ],
    )


def snapshot(*routes: ModelRoute) -> RoutesSnapshot:
    return RoutesSnapshot(models=list(routes), generated_at=datetime.now(UTC))


@dataclass
class FakeBackend:
    """Answers ``version * 10 + row index`` per row, or fails/stalls on demand, and records calls."""

    calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)
    is_ready: bool = True

    async def start(self) -> None:
        """In memory: nothing to connect to."""

    async def close(self) -> None:
        """In memory: nothing to release."""

    async def ready(self) -> tuple[bool, str]:
        return self.is_ready, "fake"

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        key = served.spec.key
        self.calls.append((key, rows))
        if key in self.delay_s:
            await asyncio.sleep(self.delay_s[key])
        if key in self.fail:
            raise self.fail[key]
        return [served.spec.version * 10.0 + i for i in range(len(rows))]


@dataclass
class CollectingTransport:
    """A log transport that keeps what it is sent, or refuses while ``down``."""

    batches: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    down: bool = False
    started: bool = False

    async def start(self) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.started = True

    async def send_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.batches.append(messages)

    async def close(self) -> None:
        """In memory: nothing to release."""

    @property
    def records(self) -> list[tuple[bytes, bytes]]:
        return [m for b in self.batches for m in b]


class AcknowledgedFeedback:
    """Keeps what it is asked to publish, as an acknowledging broker would (the feedback
    publisher's boundary; the real one is tested against the broker in tests/integration)."""

    def __init__(self) -> None:
        self.published: list[InferenceFeedback | OutcomeRecorded] = []

    async def publish(self, feedback: InferenceFeedback | OutcomeRecorded) -> str:
        self.published.append(feedback)
        return f"event-{len(self.published)}"

    async def close(self) -> None:
        """Nothing to release."""


@dataclass
class GatewayHarness:
    client: httpx.AsyncClient
    app: Any
    settings: GatewaySettings
    tokens: TokenAuthority
    backend: Any

    def auth(
        self, role: Role = Role.VIEWER, teams: list[str] | None = None, subject: str | None = None
    ) -> dict[str, str]:
        token, _, _ = self.tokens.issue(
            subject or f"{role}-user", role, teams if teams is not None else ["risk"]
        )
        return {"Authorization": f"Bearer {token}"}

    def shed_total(self) -> float:
        return self.app.state.gateway_metrics.shed_total()


def gateway_settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": CLOSED_PORT,
        "deployer_url": "http://127.0.0.1:1",
        "jwt_secret": SECRET,
        "follow_rollouts": False,
        "log_linger_ms": 5,
        "grpc_port": 0,  # off unless a test asks for it (free_port()): 8081 may be taken on this box
        # Calls go to the backend under test unless a test turns the gateway's own models on.
        "local_models_mb": 0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def running_gateway(
    routes: RoutesSnapshot | None,
    *,
    backend: Any = None,
    log_transport: Any = None,
    feedback: Any = None,
    ray_backend: bool = False,
    **overrides: Any,
) -> AsyncIterator[GatewayHarness]:
    """The gateway with ``routes`` injected (None: ask the deployer), a ``FakeBackend`` unless
    ``ray_backend`` (then the real ``RayBackend`` joins ``ray_address``)."""
    settings = gateway_settings(**overrides)
    if backend is None and not ray_backend:
        backend = FakeBackend()
    app = create_app(settings, backend=backend, routes=routes, log_transport=log_transport, feedback=feedback)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield GatewayHarness(client, app, settings, app.state.tokens, backend)


__all__ = [
    "CLOSED_PORT",
    "SECRET",
    "SIGNATURE",
    "AcknowledgedFeedback",
    "CollectingTransport",
    "FakeBackend",
    "GatewayHarness",
    "ModelFailed",
    "RouteArm",
    "gateway_settings",
    "route",
    "running_gateway",
    "snapshot",
    "spec",
]
