"""Run the deployer in-process for tests, with an in-memory serving engine and role tokens."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import CloudEvent, ModelRegistered, Topic, make_event, parse_event
from fleet_core.schemas import FieldSpec, ResourceQuota, Signature
from fleet_core.serving import POOL_APP, ModelSpec, PoolConfig, PoolSizing
from fleet_deployer.app import create_app
from fleet_deployer.controller import DeploymentController
from fleet_deployer.models import MESSAGING
from fleet_deployer.settings import DeployerSettings
from support import backend

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class FakeApp:
    name: str
    status: str = "RUNNING"
    replicas: int = 1
    min_replicas: int = 0
    max_replicas: int = 1
    actor_resources: dict[str, Any] = field(default_factory=dict)
    config: Any = None


class FakeServingControl:
    """An in-memory Ray Serve: records every call; ``fail_next`` makes the next apply raise."""

    def __init__(self) -> None:
        self.apps: dict[str, FakeApp] = {}
        self.calls: list[tuple[str, str]] = []
        self.address: str | None = None
        self.fail_next: str | None = None
        self.fail_smoke: str | None = None
        self.described: list[str] = []
        self.hold: threading.Event | None = None
        """When set to an event, each pool apply is recorded and then waits for it (a slow round)."""
        self._lock = threading.Lock()

    def _maybe_fail(self) -> None:
        if self.fail_next:
            message, self.fail_next = self.fail_next, None
            raise RuntimeError(message)

    def connect(self, address: str) -> None:
        self.address = address

    def apply_pool(self, config: PoolConfig, sizing: PoolSizing, env: dict[str, str]) -> None:
        with self._lock:
            self.calls.append(("apply_pool", ",".join(sorted(config.models))))
        if self.hold is not None:
            self.hold.wait(timeout=30)
        with self._lock:
            self._maybe_fail()
            self.apps[POOL_APP] = FakeApp(
                POOL_APP,
                replicas=sizing.min_replicas,
                min_replicas=sizing.min_replicas,
                max_replicas=sizing.max_replicas,
                actor_resources={"CPU": sizing.num_cpus},
                config=config,
            )

    def apply_dedicated(
        self, spec: ModelSpec, quota: ResourceQuota, idle_s: float, env: dict[str, str]
    ) -> None:
        from fleet_core.serving import dedicated_app_name

        name = dedicated_app_name(spec.model, spec.version)
        with self._lock:
            self.calls.append(("apply_dedicated", name))
            self._maybe_fail()
            self.apps[name] = FakeApp(
                name,
                replicas=quota.min_replicas,
                min_replicas=quota.min_replicas,
                max_replicas=quota.max_replicas,
                actor_resources={"CPU": quota.num_cpus},
            )

    def remove(self, app_name: str) -> None:
        with self._lock:
            self.calls.append(("remove", app_name))
            self.apps.pop(app_name, None)

    async def smoke_test(self, spec: ModelSpec, placement: Any, rows: list[dict[str, Any]]) -> list[Any]:
        with self._lock:
            self.calls.append(("smoke_test", spec.key))
            if self.fail_smoke:
                raise RuntimeError(self.fail_smoke)
            return [0 for _ in rows]

    def describe(self, app_name: str) -> FakeApp | None:
        self.described.append(app_name)
        return self.apps.get(app_name)

    def list_apps(self) -> list[str]:
        return list(self.apps)

    def pool_stats(self) -> list[dict[str, Any]]:
        """One replica that has loaded every configured version, each charged its artifact size."""
        pool = self.apps.get(POOL_APP)
        if pool is None:
            raise LookupError("no pool app")
        loaded = [
            {"key": key, "team": spec.team, "bytes": max(spec.size_bytes, 64 * 2**10), "in_flight": 0}
            for key, spec in sorted(pool.config.models.items())
        ]
        return [
            {
                "replica_id": "fake-replica",
                "actor_id": "fake-actor",
                "configured": sorted(pool.config.models),
                "loaded": loaded,
                "budget_bytes": 64 * 2**20,
                "evictions_by_bytes": 0,
            }
        ]


@dataclass
class DeployerHarness:
    client: httpx.AsyncClient
    app: Any
    settings: DeployerSettings
    tokens: TokenAuthority
    serving: FakeServingControl | None

    @property
    def controller(self) -> DeploymentController:
        return self.app.state.controller  # type: ignore[no-any-return]

    def auth(
        self, role: Role = Role.ADMIN, teams: list[str] | None = None, subject: str | None = None
    ) -> dict[str, str]:
        token, _, _ = self.tokens.issue(
            subject or f"{role}-user", role, teams if teams is not None else ["*"]
        )
        return {"Authorization": f"Bearer {token}"}

    async def register(self, model: str, version: int, **extra: Any) -> None:
        """Feed the deployer a ``model.registered`` event directly, as its consumer would."""
        event = make_event(Topic.MODEL_REGISTERED, registered(model, version, **extra), source="/test")
        await self.controller.on_model_registered(event.id, event.data)

    async def published(self, topic: Topic = Topic.ROLLOUT_UPDATED) -> list[CloudEvent[Any]]:
        """Events staged in the outbox for ``topic``, oldest first."""
        t = MESSAGING.outbox
        async with self.app.state.db.sessions() as s:
            rows = (
                await s.execute(select(t.c.payload).where(t.c.topic == topic.value).order_by(t.c.seq))
            ).all()
        return [parse_event(topic, row.payload) for row in rows]


def registered(model: str, version: int, **extra: Any) -> ModelRegistered:
    fields: dict[str, Any] = {
        "model": model,
        "version": version,
        "team": "fraud",
        "flavor": "sklearn",
        "artifact_uri": f"file:///tmp/{model}/{version}.skops",
        "sha256": f"{version:064x}",
        "size_bytes": 1024,
        "signature": Signature(inputs=[FieldSpec(name="x")]),
        "registered_by": "alice",
    }
    fields.update(extra)
    return ModelRegistered(**fields)


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        r = await client.get("/readyz")
        if r.status_code == 200:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"deployer not ready: {r.text}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_deployer(
    tmp: Path,
    *,
    serving: FakeServingControl | None = None,
    database_url: str | None = None,
    kafka_bootstrap: str = "127.0.0.1:1",
    consume_events: bool = False,
    ray_address: str | None = None,
    **overrides: Any,
) -> AsyncIterator[DeployerHarness]:
    settings = DeployerSettings(
        home=tmp,
        database_url=database_url or backend.database_url(tmp, "deployer"),
        kafka_bootstrap=kafka_bootstrap,
        jwt_secret=SECRET,
        ray_address=ray_address or ("fake://ray" if serving is not None else None),
        consume_events=consume_events,
        outbox_poll_interval_s=0.2,
        **overrides,
    )
    app = create_app(settings, serving_control=serving)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://deployer") as client:
            harness = DeployerHarness(client, app, settings, app.state.tokens, serving)
            if not consume_events:
                await wait_ready(client, timeout_s=180)
            yield harness
