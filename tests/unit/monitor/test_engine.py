"""The engine over a real SQLite store: versions unknown to the monitor are looked up in the
registry, anomalies become alerts with events in the outbox, and Alertmanager gets its format."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet_core.db import Database
from fleet_core.events import ModelRegistered, OutcomeRecorded, Topic, parse_event
from fleet_monitor.anomaly import AnomalyThresholds
from fleet_monitor.app import MIGRATIONS
from fleet_monitor.config import ModelConfig
from fleet_monitor.engine import EngineSettings, MonitorEngine
from fleet_monitor.models import MESSAGING
from fleet_monitor.notifier import alertmanager_payload
from fleet_monitor.store import MonitorStore
from support.monitor import Population, inference, registered, route_update


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}")
    await db.migrate(MIGRATIONS)
    yield MonitorStore(db)
    await db.dispose()


async def _outbox(store: MonitorStore, topic: Topic) -> list:
    t = MESSAGING.outbox
    async with store.db.sessions() as s:
        rows = (await s.execute(select(t.c.payload).where(t.c.topic == topic.value).order_by(t.c.seq))).all()
    return [parse_event(topic, r.payload).data for r in rows]


async def test_a_version_seen_only_in_traffic_is_looked_up_in_the_registry(store: MonitorStore) -> None:
    calls: list[tuple[str, int]] = []
    answers: list[ModelRegistered | Exception | None] = [RuntimeError("registry away"), registered("credit")]

    async def lookup(model: str, version: int) -> ModelRegistered | None:
        calls.append((model, version))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    engine = MonitorEngine(
        store,
        settings=EngineSettings(defaults=ModelConfig(drift_window_rows=100)),
        clock=clock,
        lookup=lookup,
    )
    population = Population(1)
    engine.ingest([inference("credit", 1, population.rows(10))])
    await engine.settle()
    assert calls == [("credit", 1)] and ("credit", 1) not in engine.versions
    await engine.settle()
    assert len(calls) == 1, "a failed lookup waits before it is retried"
    clock.now += 61
    await engine.settle()
    assert ("credit", 1) in engine.versions
    async with store.transaction() as s:
        assert [v.model for v in await store.versions(s)] == ["credit"]
    # From now on the version's traffic is drift-scored.
    engine.ingest([inference("credit", 1, population.rows(10, shift={"income": 2.0})) for _ in range(10)])
    await engine.settle()
    drifts = await _outbox(store, Topic.DRIFT_DETECTED)
    assert [d.kind for d in drifts if d.kind == "data"] == ["data"]


async def test_a_latency_anomaly_opens_and_resolves_an_alert_with_its_events(store: MonitorStore) -> None:
    clock = Clock()
    engine = MonitorEngine(
        store,
        settings=EngineSettings(
            bucket_s=1.0, anomaly=AnomalyThresholds(warmup_buckets=5, fire_after=2, resolve_after=2)
        ),
        clock=clock,
    )
    rows = Population(2).rows(1)

    async def second(latency: float) -> None:
        engine.ingest([inference("credit", 1, rows, latency_ms=latency + i % 3) for i in range(20)])
        clock.now += 1.0
        await engine.tick()

    for _ in range(8):
        await second(10.0)
    for _ in range(3):
        await second(300.0)
    async with store.transaction() as s:
        firing = await store.alerts(s, state="firing")
    assert [(a.kind, a.name, a.severity) for a in firing] == [("anomaly", "latency", "warning")]
    for _ in range(4):
        await second(10.0)
    async with store.transaction() as s:
        assert await store.alerts(s, state="firing") == []
    events = [e for e in await _outbox(store, Topic.ANOMALY_DETECTED) if e.metric == "latency"]
    assert [e.state for e in events] == ["firing", "resolved"]

    payload = alertmanager_payload(firing[0], generator_url="http://monitor:8003")
    assert payload["labels"] == {
        "alertname": "FleetLatency",
        "kind": "anomaly",
        "model": "credit",
        "severity": "warning",
        "service": "fleet-monitor",
        "version": "1",
        "arm": "primary",
    }
    assert "endsAt" not in payload and payload["generatorURL"].endswith("/#/models/credit")


async def test_a_business_outcome_joins_the_arm_that_served_its_request_or_routing_key(
    store: MonitorStore,
) -> None:
    engine = MonitorEngine(store, settings=EngineSettings(defaults=ModelConfig()), clock=Clock())
    for version in (1, 2):
        await engine.on_model_registered(f"reg-{version}", registered("shop", version))
    await engine.on_rollout_updated(
        "ab-1",
        route_update(
            "shop", [(1, 50), (2, 50)], strategy="ab", phase="progressing", version=2, kpi="conversion"
        ),
    )
    population = Population(2)
    engine.ingest(
        [
            inference("shop", 1, population.rows(1), [1], request_id="req-a", routing_key="user-a"),
            inference("shop", 2, population.rows(1), [1], request_id="req-b", routing_key="user-b"),
            # A shadow's copy of the same request answered no one: outcomes stay with v2.
            inference(
                "shop", 3, population.rows(1), [0], request_id="req-b", routing_key="user-b", arm="shadow"
            ),
        ]
    )
    now = datetime.now(UTC)
    for outcome in (
        OutcomeRecorded(model="shop", kpi="conversion", value=1.0, routing_key="user-b", timestamp=now),
        OutcomeRecorded(model="shop", kpi="conversion", value=0.0, request_id="req-a", timestamp=now),
        OutcomeRecorded(model="shop", kpi="revenue", value=30.0, request_id="req-b", timestamp=now),
        OutcomeRecorded(model="shop", kpi="conversion", value=1.0, routing_key="nobody", timestamp=now),
    ):
        engine.ingest_outcome(outcome)
    samples = engine.rollouts["shop"].samples
    assert samples[2].outcomes == {"conversion": [1.0], "revenue": [30.0]}
    assert samples[1].outcomes == {"conversion": [0.0]}
    assert (engine.counters.outcomes, engine.counters.outcomes_unjoined) == (3, 1)
