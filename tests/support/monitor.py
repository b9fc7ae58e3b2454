"""Monitor test support: a registered model with a real reference profile, synthetic traffic from
its training distribution (or shifted), and the monitor app run in-process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaProducer
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import (
    CloudEvent,
    InferenceFeedback,
    InferenceLogged,
    ModelRegistered,
    RolloutUpdated,
    RouteArm,
    RouteTable,
    Topic,
    make_event,
    parse_event,
)
from fleet_core.profile import reference_profile
from fleet_core.schemas import Contract, FieldSpec, Signature
from fleet_monitor.app import create_app
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.models import MESSAGING
from fleet_monitor.settings import MonitorSettings
from support import backend

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
FEATURES = ("income", "age", "balance", "tenure")
MEANS = {"income": 50.0, "age": 40.0, "balance": 1000.0, "tenure": 5.0}
STDS = {"income": 10.0, "age": 12.0, "balance": 300.0, "tenure": 2.0}
CHANNELS = ("web", "app", "branch")
CHANNEL_P = (0.5, 0.35, 0.15)


class Population:
    """The training distribution of a small credit model, and shifted versions of it."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def rows(
        self, n: int, *, shift: dict[str, float] | None = None, channel_p: tuple[float, ...] = CHANNEL_P
    ) -> list[dict[str, Any]]:
        """``n`` rows; ``shift`` moves a feature's mean by that many standard deviations."""
        shift = shift or {}
        cols = {f: self.rng.normal(MEANS[f] + shift.get(f, 0.0) * STDS[f], STDS[f], n) for f in FEATURES}
        channel = self.rng.choice(CHANNELS, n, p=channel_p)
        return [
            {**{f: round(float(cols[f][i]), 4) for f in FEATURES}, "channel": str(channel[i])}
            for i in range(n)
        ]

    @staticmethod
    def label(row: dict[str, Any]) -> int:
        """The ground truth the model learned: approve when income and balance are high."""
        return int(row["income"] / STDS["income"] + row["balance"] / STDS["balance"] > 8.33 + 0.0)

    def predictions(self, rows: list[dict[str, Any]]) -> list[int]:
        return [self.label(r) for r in rows]


def registered(
    model: str, version: int = 1, *, task: str = "classification", **extra: Any
) -> ModelRegistered:
    population = Population(seed=1000 + version)
    train = population.rows(3000)
    columns: dict[str, list[Any]] = {f: [r[f] for r in train] for f in (*FEATURES, "channel")}
    profile = reference_profile(
        columns,
        categorical={"channel"},
        predictions=population.predictions(train),
        predictions_categorical=True,
    )
    fields: dict[str, Any] = {
        "model": model,
        "version": version,
        "team": "credit",
        "flavor": "sklearn",
        "task": task,
        "artifact_uri": f"file:///tmp/{model}/{version}.skops",
        "sha256": f"{version:064x}",
        "size_bytes": 1024,
        "signature": Signature(
            inputs=[
                *(FieldSpec(name=f) for f in FEATURES),
                FieldSpec(name="channel", type="category", categories=list(CHANNELS)),
            ]
        ),
        "metrics": {"accuracy": 0.95, "f1": 0.94},
        "reference_profile": profile,
        "registered_by": "alice",
    }
    fields.update(extra)
    return ModelRegistered(**fields)


def route_update(
    model: str,
    arms: list[tuple[int, float]],
    *,
    revision: int = 1,
    strategy: str = "direct",
    phase: str = "promoted",
    version: int | None = None,
    step: int = 0,
    rollout_id: str = "r-1",
    kpi: str | None = None,
) -> RolloutUpdated:
    return RolloutUpdated(
        rollout_id=rollout_id,
        model=model,
        version=version if version is not None else arms[-1][0],
        strategy=strategy,  # type: ignore[arg-type]
        phase=phase,  # type: ignore[arg-type]
        step=step,
        routes=RouteTable(
            model=model, revision=revision, arms=[RouteArm(version=v, weight=w) for v, w in arms]
        ),
        kpi=kpi,
    )


def inference(
    model: str,
    version: int,
    rows: list[dict[str, Any]],
    outputs: list[Any] | None = None,
    *,
    latency_ms: float = 5.0,
    status: str = "ok",
    arm: str = "primary",
    caller: str | None = "caller-a",
    request_id: str | None = None,
    routing_key: str | None = None,
) -> InferenceLogged:
    return InferenceLogged(
        request_id=request_id or uuid.uuid4().hex,
        model=model,
        version=version,
        arm=arm,  # type: ignore[arg-type]
        inputs=rows,
        outputs=outputs,
        latency_ms=latency_ms,
        status=status,  # type: ignore[arg-type]
        status_code=200 if status == "ok" else 500,
        caller=caller,
        routing_key=routing_key,
        timestamp=datetime.now(UTC),
    )


def feedback(model: str, request_id: str, labels: list[Any], version: int | None = None) -> InferenceFeedback:
    return InferenceFeedback(
        request_id=request_id,
        model=model,
        version=version,
        labels=labels,
        source="test",
        timestamp=datetime.now(UTC),
    )


class Publisher:
    """Publishes typed payloads (or raw bytes) to the real broker, keyed by model."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: Topic, payloads: list[Contract]) -> None:
        futures = [
            await self.producer.send(
                topic.value, make_event(topic, p, source="/test").to_bytes(), key=p.model.encode()
            )  # type: ignore[attr-defined]
            for p in payloads
        ]
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, value: bytes, key: bytes = b"junk") -> None:
        await self.producer.send_and_wait(topic, value, key=key)


@dataclass
class MonitorHarness:
    client: httpx.AsyncClient
    app: Any
    settings: MonitorSettings
    tokens: TokenAuthority

    @property
    def engine(self) -> MonitorEngine:
        return self.app.state.engine  # type: ignore[no-any-return]

    def auth(self, role: Role = Role.ADMIN, teams: list[str] | None = None) -> dict[str, str]:
        token, _, _ = self.tokens.issue(f"{role}-user", role, teams if teams is not None else ["*"])
        return {"Authorization": f"Bearer {token}"}

    async def published(self, topic: Topic) -> list[CloudEvent[Any]]:
        """Events the monitor staged in its outbox for ``topic``, oldest first."""
        t = MESSAGING.outbox
        async with self.app.state.engine.store.db.sessions() as s:
            rows = (
                await s.execute(select(t.c.payload).where(t.c.topic == topic.value).order_by(t.c.seq))
            ).all()
        return [parse_event(topic, row.payload) for row in rows]

    async def wait_for(self, predicate: Any, *, timeout_s: float = 30.0, what: str = "condition") -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_monitor(
    tmp: Path, *, kafka_bootstrap: str = "127.0.0.1:1", consume_events: bool = False, **overrides: Any
) -> AsyncIterator[MonitorHarness]:
    values: dict[str, Any] = {
        "home": tmp,
        **backend.lake_settings(),
        "kafka_bootstrap": kafka_bootstrap,
        "jwt_secret": SECRET,
        "consume_events": consume_events,
        "outbox_poll_interval_s": 0.2,
        "tick_interval_s": 0.2,
        "tune_gc": False,  # the monitor shares the test runner's process here
    }
    values.update(overrides)
    if "database_url" not in values:
        values["database_url"] = backend.database_url(tmp, "monitor")
    settings = MonitorSettings(**values)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
            harness = MonitorHarness(client, app, settings, app.state.tokens)
            await harness.wait_for(
                lambda: _ready(client), timeout_s=120, what="the monitor to be ready (consumer groups joined)"
            )
            yield harness


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
