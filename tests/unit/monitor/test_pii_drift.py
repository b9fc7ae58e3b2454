"""Drift on PII fields: the gateway logs a keyed hash of every PII value, so the monitor scores a
PII category against its reference categories hashed the same way, and leaves numeric PII out.
Identical traffic shows no drift; a real shift of a PII category still does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from fleet_core.db import Database
from fleet_core.privacy import PiiHasher
from fleet_core.schemas import CategoricalProfile, FieldSpec, ReferenceProfile, Signature
from fleet_gateway.inference_log import InferenceLogSink
from fleet_gateway.metrics import GatewayMetrics
from fleet_monitor.app import MIGRATIONS
from fleet_monitor.config import ModelConfig
from fleet_monitor.engine import EngineSettings, MonitorEngine
from fleet_monitor.privacy import drift_profile
from fleet_monitor.settings import MonitorSettings
from fleet_monitor.store import MonitorStore
from support.monitor import CHANNELS, FEATURES, Population, inference, registered

SALT = "a-production-like-salt-0123456789"
PII = frozenset({"channel", "age"})
WINDOW = 200
SIGNATURE = Signature(
    inputs=[
        *(FieldSpec(name=f, pii=f in PII) for f in FEATURES),
        FieldSpec(name="channel", type="category", categories=list(CHANNELS), pii=True),
    ]
)


@pytest.fixture
async def store(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}")
    await db.migrate(MIGRATIONS)
    yield MonitorStore(db)
    await db.dispose()


async def _engine(store: MonitorStore, salt: str | None) -> MonitorEngine:
    engine = MonitorEngine(
        store, settings=EngineSettings(defaults=ModelConfig(drift_window_rows=WINDOW), pii_salt=salt)
    )
    await engine.on_model_registered("e-1", registered("credit", signature=SIGNATURE))
    return engine


def _logged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the gateway logs them: PII fields replaced by its keyed hash."""
    return PiiHasher(SALT).filter_rows(rows, PII)


async def _windows(engine: MonitorEngine, population: Population, windows: int, **shift: Any) -> None:
    for _ in range(windows * WINDOW // 10):
        engine.ingest([inference("credit", 1, _logged(population.rows(10, **shift)))])
    await engine.settle()


async def test_identical_traffic_on_a_pii_category_shows_no_drift(store: MonitorStore) -> None:
    engine = await _engine(store, SALT)
    population = Population(seed=11)
    await _windows(engine, population, 10)
    assert engine.counters.drift_windows == 10
    assert engine.counters.drifted_windows == 0, "hashed traffic matches the hashed reference"
    scores = engine.latest_drift[("credit", 1, "data")].scores
    tested = {(s.feature, s.test) for s in scores}
    assert ("channel", "chi2") in tested, "the PII category is still tested"
    assert not any(s.feature == "age" for s in scores), "a hashed number has no distribution to compare"
    info = engine.versions[("credit", 1)]
    assert not any(info.out_of_range(row) for row in _logged(population.rows(200))), (
        "hashed categories are not out of range"
    )

    await _windows(engine, population, 1, channel_p=(0.05, 0.05, 0.9))
    latest = engine.latest_drift[("credit", 1, "data")]
    assert "channel" in {s.feature for s in latest.scores if s.drifted}, "a real shift still drifts"


async def test_without_the_salt_pii_fields_are_left_out_not_drifting(store: MonitorStore) -> None:
    engine = await _engine(store, None)
    await _windows(engine, Population(seed=12), 5)
    assert engine.counters.drift_windows == 5 and engine.counters.drifted_windows == 0
    features = {s.feature for s in engine.latest_drift[("credit", 1, "data")].scores}
    assert features == set(FEATURES) - PII


@pytest.mark.parametrize("value", ["web", "jane@example.com", 12345, 1.5, True, False])
def test_reference_categories_are_rekeyed_exactly_as_the_gateway_logs_the_value(value: Any) -> None:
    spec = FieldSpec(name="f", type="bool" if isinstance(value, bool) else "string", pii=True)
    profile = ReferenceProfile(
        row_count=3, features={"f": CategoricalProfile(count=3, frequencies={str(value): 3})}
    )  # reference profiles store each category as str(value)
    rekeyed = drift_profile(profile, [spec], PiiHasher(SALT))
    assert rekeyed is not None
    sink = InferenceLogSink(
        _NoTransport(),
        GatewayMetrics(CollectorRegistry()),
        queue_size=1,
        batch_size=1,
        linger_ms=0,
        pii_salt=SALT,
    )
    (logged,) = sink.hasher.filter_rows([{"f": value}], ["f"])
    assert rekeyed.features["f"].frequencies == {logged["f"]: 3}  # type: ignore[union-attr]


class _NoTransport:
    async def start(self) -> None: ...

    async def send_batch(self, messages: list[tuple[bytes, bytes]]) -> None: ...

    async def close(self) -> None: ...


def test_production_refuses_the_embedded_salt_and_runs_without_one(tmp_path: Path) -> None:
    production = {"mode": "production", "jwt_secret": "j" * 40, "home": tmp_path}
    with pytest.raises(ValidationError, match="FLEET_PII_SALT"):
        MonitorSettings(**production, pii_salt="embedded-pii-salt")
    assert MonitorSettings(**production).engine_settings().pii_salt is None, "the migrate job needs no salt"
    assert MonitorSettings(**production, pii_salt=SALT).engine_settings().pii_salt == SALT
    assert MonitorSettings(home=tmp_path).engine_settings().pii_salt == "embedded-pii-salt"
