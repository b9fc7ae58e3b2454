"""Sliding windows: merged latency quantiles, rates over the window, empty buckets for gaps, and
late requests never reopen a closed bucket."""

from __future__ import annotations

import numpy as np
import pytest

from fleet_monitor.windows import MetricWindows, SeriesKey

KEY = SeriesKey("m", 1, "primary")


def test_quantiles_merge_across_buckets_within_one_percent() -> None:
    windows = MetricWindows(bucket_s=1.0, history=100)
    values = np.random.default_rng(0).lognormal(3, 0.5, 6000)
    for i, v in enumerate(values):
        t = 1000.0 + i / 1000  # six one-second buckets
        windows.record(KEY, timestamp=t, now=t, latency_ms=float(v), error=False)
    stats = windows.stats(KEY, seconds=10, now=1006.0)
    assert stats.requests == 6000
    for q, got in ((0.5, stats.latency_p50_ms), (0.95, stats.latency_p95_ms), (0.99, stats.latency_p99_ms)):
        assert got == pytest.approx(float(np.quantile(values, q)), rel=0.02)


def test_rates_and_error_rate_over_the_window() -> None:
    windows = MetricWindows(bucket_s=1.0, history=100)
    for i in range(100):
        windows.record(KEY, timestamp=2000 + i / 10, now=2000 + i / 10, latency_ms=5, error=i % 10 == 0)
    stats = windows.stats(KEY, seconds=10, now=2010.0)
    assert stats.rps == pytest.approx(10, rel=0.05)
    assert stats.error_rate == pytest.approx(0.1)


def test_a_silent_gap_closes_as_empty_buckets() -> None:
    windows = MetricWindows(bucket_s=1.0, history=100, grace_s=0.5)
    windows.record(KEY, timestamp=100.2, now=100.2, latency_ms=5, error=False)
    closed = windows.close_until(105.0)
    assert [b.requests for _, b in closed] == [1, 0, 0, 0]


def test_a_late_request_lands_in_the_oldest_open_bucket() -> None:
    windows = MetricWindows(bucket_s=1.0, history=100, grace_s=0.5)
    windows.record(KEY, timestamp=100.2, now=100.2, latency_ms=5, error=False)
    windows.close_until(102.0)
    windows.record(KEY, timestamp=100.5, now=102.1, latency_ms=5, error=False)
    closed = windows.close_until(104.0)
    assert sum(b.requests for _, b in closed) == 1
