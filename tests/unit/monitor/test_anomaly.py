"""Anomalies against robust baselines: a latency spike fires after two buckets and resolves after
three normal ones; jitter never fires; request patterns are flagged."""

from __future__ import annotations

import numpy as np

from fleet_monitor.anomaly import AnomalyDetector, AnomalyThresholds
from fleet_monitor.windows import Bucket, SeriesKey

KEY = SeriesKey("m", 1, "primary")


def bucket(latencies: list[float], *, errors: int = 0, start: float = 0.0) -> Bucket:
    b = Bucket(start=start, seconds=1.0)
    for i, latency in enumerate(latencies):
        b.requests += 1
        b.rows += 1
        b.errors += int(i < errors)
        b.latency.add(latency)
    return b


def test_a_latency_spike_fires_and_then_resolves() -> None:
    rng = np.random.default_rng(0)
    detector = AnomalyDetector(AnomalyThresholds(warmup_buckets=10))
    normal = lambda: bucket(list(rng.normal(20, 2, 50).clip(1)))  # noqa: E731
    changes = [c for _ in range(20) for c in detector.observe(KEY, normal())]
    assert changes == []
    spike = [c for _ in range(3) for c in detector.observe(KEY, bucket(list(rng.normal(200, 10, 50))))]
    assert [(c.metric, c.state) for c in spike] == [("latency", "firing")]
    assert spike[0].value > 150 and spike[0].baseline < 30
    after = [c for _ in range(4) for c in detector.observe(KEY, normal())]
    assert [(c.metric, c.state) for c in after] == [("latency", "resolved")]


def test_jitter_on_a_very_steady_model_does_not_fire() -> None:
    detector = AnomalyDetector(AnomalyThresholds(warmup_buckets=5))
    for _ in range(10):
        detector.observe(KEY, bucket([5.0] * 20))
    assert detector.observe(KEY, bucket([9.0] * 20)) == []
    assert detector.observe(KEY, bucket([9.0] * 20)) == []


def test_an_error_burst_fires_on_the_error_rate() -> None:
    detector = AnomalyDetector(AnomalyThresholds(warmup_buckets=5, fire_after=1))
    for _ in range(8):
        detector.observe(KEY, bucket([10.0] * 40))
    changes = detector.observe(KEY, bucket([10.0] * 40, errors=20))
    assert [(c.metric, c.state) for c in changes] == [("error_rate", "firing")]
    assert detector.is_firing(KEY, "error_rate")


def test_one_caller_probing_with_out_of_range_inputs_is_flagged() -> None:
    detector = AnomalyDetector(AnomalyThresholds(fire_after=1))
    b = bucket([5.0] * 60)
    b.callers.update({"prober": 50, "normal": 10})
    b.caller_suspicious.update({"prober": 45})
    b.out_of_range_rows = 45
    changes = {c.metric: c for c in detector.observe(KEY, b)}
    assert changes["probing"].state == "firing" and "prober" in changes["probing"].detail
    assert changes["out_of_range_inputs"].state == "firing"


def test_a_single_caller_whose_traffic_shifted_is_not_called_a_prober() -> None:
    detector = AnomalyDetector(AnomalyThresholds(fire_after=1))
    b = bucket([5.0] * 60)
    b.callers.update({"only-app": 60})
    b.caller_suspicious.update({"only-app": 60})
    assert "probing" not in {c.metric for c in detector.observe(KEY, b)}
