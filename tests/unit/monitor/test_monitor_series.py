"""The monitor's per-model series with 1,000 models from 20 teams: what each
FLEET_METRICS_MODEL_SERIES exports, that folded models still add up in ``model="_other"``, that a
model with a firing alert keeps its own series, and that no counter goes backwards when the top N
changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from fleet_core.model_series import ModelSeriesPolicy, ModelSeriesSelector
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.entities import Alert, AlertDraft
from fleet_monitor.exposition import MonitorCollector
from fleet_monitor.settings import MonitorSettings
from support.monitor import Population, inference, registered, running_monitor

MODELS = 1000
TEAMS = 20
PER_MODEL = (
    "fleet_model_requests",
    "fleet_model_errors",
    "fleet_model_request_rate",
    "fleet_model_error_rate",
    "fleet_model_latency_ms",
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def name(i: int) -> str:
    return f"m{i:04d}"


def scrape(collector: MonitorCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(PER_MODEL)
    }


def total(samples: Samples, metric: str = "fleet_model_requests_total") -> float:
    return sum(v for (n, _), v in samples.items() if n == metric)


def live_rates(engine: MonitorEngine) -> float:
    now = engine.clock()
    return sum(engine.windows.stats(k, seconds=60, now=now).rps for k in engine.windows.series())


def collector(engine: MonitorEngine, setting: str, firing: list[Alert], clock: Clock) -> MonitorCollector:
    selector = ModelSeriesSelector(ModelSeriesPolicy.parse(setting), rank_interval_s=60, clock=clock)
    return MonitorCollector(engine, max_series=100_000, firing=firing, series=selector)


async def test_a_thousand_models_export_what_each_setting_allows(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, lake_enabled=False) as m:
        engine = m.engine
        template = registered(name(0))
        for i in range(MODELS):
            update = {"model": name(i), "team": f"team-{i % TEAMS:02d}"}
            await engine.on_model_registered(f"e-{i}", template.model_copy(update=update))
        row = Population(seed=2).rows(1)
        traffic = {name(i): 1 + (i * 7919) % 10 for i in range(MODELS)}
        engine.ingest(
            inference(model, 1, row, [0], latency_ms=5.0, status="error" if n == 0 and i % 7 == 0 else "ok")
            for i, (model, count) in enumerate(traffic.items())
            for n in range(count)
        )
        async with engine.store.transaction() as s:
            alert = await engine.store.open_alert(
                s, AlertDraft(kind="anomaly", name="latency", model=name(999), version=1, summary="slow")
            )
        assert alert is not None
        served, failed = sum(traffic.values()), sum(1 for i in range(MODELS) if i % 7 == 0)

        counts: dict[str, int] = {}
        for setting in ("all", "top:50", "team"):
            # Rates are per second over a window that is still filling, so they fall as the wall
            # clock runs: the scraped sum lies between the sums just before and just after.
            before = live_rates(engine)
            samples = scrape(collector(engine, setting, [alert], Clock()))
            after = live_rates(engine)
            counts[setting] = len(samples)
            assert total(samples) == served, setting
            assert total(samples, "fleet_model_errors_total") == failed, setting
            models = {dict(labels)["model"] for _, labels in samples}
            assert name(999) in models, f"{setting}: a model with a firing alert keeps its series"
            rates = sum(v for (n, labels), v in samples.items() if n == "fleet_model_request_rate")
            assert min(before, after) - 1e-6 <= rates <= max(before, after) + 1e-6, (before, rates, after)

        # Per (model, version, arm): requests and errors counters, rate, error rate and three
        # latency quantiles. Kept models under top:N also carry _created for their two counters.
        assert counts["all"] == MODELS * 7
        busiest = 50 + 1  # and the alerting model, pinned
        assert counts["top:50"] == busiest * 9 + TEAMS * 7
        assert counts["team"] == 1 * 9 + TEAMS * 7
        print(f"series at {MODELS} models: {counts}")


async def test_no_counter_goes_backwards_when_the_top_changes(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, lake_enabled=False) as m:
        engine = m.engine
        for i in range(4):
            await engine.on_model_registered(f"e-{i}", registered(name(i), team="credit"))
        clock = Clock()
        metrics = collector(engine, "top:2", [], clock)
        row = Population(seed=2).rows(1)
        previous: Samples = {}
        served = 0
        owners: set[str] = set()
        first = {name(0): 9, name(1): 8, name(2): 1, name(3): 1}
        second = {name(2): 30, name(3): 30, name(0): 1}
        for minute, traffic in enumerate([first, second, second, first]):
            clock.now = minute * 61.0
            for _ in range(3):
                engine.ingest(inference(model, 1, row, [0]) for model, n in traffic.items() for _ in range(n))
                served += sum(traffic.values())
                samples = scrape(metrics)
                gained = 0.0
                for key, value in samples.items():
                    if key in previous:
                        assert value >= previous[key], f"{key} went from {previous[key]} to {value}"
                    if key[0] == "fleet_model_requests_total":
                        gained += value - previous.get(key, 0.0)
                        owners.add(dict(key[1])["model"])
                assert gained == sum(traffic.values()), "the increase over all series is what was served"
                previous = samples
        assert {name(2), name(3), "_other"} <= owners, "m2 and m3 held their own series for a while"


async def test_the_setting_reaches_the_monitors_metrics_endpoint(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, lake_enabled=False, metrics_model_series="team") as m:
        await m.engine.on_model_registered("e-1", registered("churn", team="credit"))
        m.engine.ingest([inference("churn", 1, Population(seed=1).rows(1), [0])])
        text = (await m.client.get("/metrics")).text
    assert (
        'fleet_model_requests_total{arm="primary",model="_other",team="credit",version="_other"} 1.0' in text
    )
    assert 'model="churn"' not in text
    assert "fleet_monitor_models_folded 1.0" in text


def test_a_bad_setting_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="metrics_model_series"):
        MonitorSettings(home=tmp_path, metrics_model_series="top:many")
