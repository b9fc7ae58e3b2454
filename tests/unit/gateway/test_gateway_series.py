"""The gateway's per-model series with 1,000 models: what each FLEET_METRICS_MODEL_SERIES exports,
that the fleet's totals stay right when models are folded into ``_other``, and that no counter
goes backwards when a model moves in or out of the top N."""

from __future__ import annotations

from collections import defaultdict

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet_core.model_series import ModelSeriesPolicy, ModelSeriesSelector
from fleet_gateway.metrics import GatewayMetrics

MODELS = 1000
TEAMS = 20
PER_MODEL = ("fleet_gateway_requests", "fleet_gateway_request_duration_seconds")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def team(model: str) -> str:
    return f"team-{int(model.removeprefix('m')) % TEAMS:02d}"


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every per-model series as Prometheus would store it: (sample name, labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(PER_MODEL)
    }


def requests_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "fleet_gateway_requests_total")


def gateway(setting: str, clock: Clock) -> tuple[CollectorRegistry, GatewayMetrics]:
    registry = CollectorRegistry()
    selector = ModelSeriesSelector(ModelSeriesPolicy.parse(setting), rank_interval_s=60, clock=clock)
    return registry, GatewayMetrics(registry, series=selector, team_of=team)


def serve(metrics: GatewayMetrics, requests: dict[str, int]) -> None:
    for model, count in requests.items():
        for _ in range(count):
            metrics.observe(model, 1, "primary", 200, 0.004)


@pytest.mark.parametrize(
    ("setting", "series"),
    [
        # Per model, version, arm (and status): a counter and a histogram of 13 buckets, +Inf,
        # _count and _sum: 17 series.
        ("all", MODELS * 17),
        ("top:50", 50 * 17 + TEAMS * 17),  # the 50 busiest, and one _other per team
        ("team", TEAMS * 17),
    ],
)
def test_a_thousand_models_export_what_the_setting_allows_and_totals_stay_right(
    setting: str, series: int
) -> None:
    clock = Clock()
    registry, metrics = gateway(setting, clock)
    traffic = {f"m{i:04d}": 1 + (i * 7919) % 10 for i in range(MODELS)}
    serve(metrics, traffic)
    clock.now = 61
    serve(metrics, {model: 1 for model in traffic})  # the ranking happens on a request
    samples = scrape(registry)
    assert len(samples) == series
    assert requests_total(samples) == sum(traffic.values()) + MODELS, "every request counted once"
    teams = {dict(labels)["team"] for (_, labels) in samples}
    assert len(teams) == TEAMS


def test_no_counter_goes_backwards_when_models_move_in_and_out_of_the_top() -> None:
    clock = Clock()
    registry, metrics = gateway("top:2", clock)
    previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    histories: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)
    # Each minute another pair of models is the busiest (m0 and m1 start in the top); the ranking
    # at the first scrape of a minute uses the traffic since the previous ranking.
    first = {"m0": 9, "m1": 8, "m2": 1, "m3": 1}
    second = {"m2": 9, "m3": 9, "m0": 1}
    third = {"m0": 9, "m1": 9, "m2": 2}
    minutes = [first, second, second, third, third]
    for minute, traffic in enumerate(minutes):
        clock.now = minute * 61.0
        for _ in range(3):  # a few scrapes within the minute
            serve(metrics, traffic)
            served = sum(traffic.values())
            samples = scrape(registry)
            gained = 0.0
            for key, value in samples.items():
                if key in previous:
                    assert value >= previous[key], f"{key} went from {previous[key]} to {value}"
                if key[0] == "fleet_gateway_requests_total":
                    gained += value - previous.get(key, 0.0)
                histories[key].append(value)
            # What Prometheus computes as the increase over all series is exactly what was served.
            assert gained == served, (minute, gained, served)
            previous = samples
    models = {dict(labels)["model"] for (_, labels) in previous}
    assert models == {"m0", "m1", "_other"}, "m2 and m3 entered, then left again: their series went"
    assert any(dict(labels)["model"] == "m2" for (_, labels) in histories), "m2 had its own series"
