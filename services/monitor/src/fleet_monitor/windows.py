"""Sliding windows of traffic per model version and arm: fixed time buckets that merge.

Each series (model, version, arm) keeps a ring of closed buckets and the bucket(s) still open.
A bucket counts requests, errors, input rows, rows outside the training range and requests per
caller, and holds a DDSketch of latency: sketches merge exactly, so a window of any length is the
merge of its buckets, and quantiles stay within 1 % relative error whatever the traffic.

A request lands in the bucket of its own timestamp (clamped to now), or in the oldest open bucket
when its bucket has already closed, so a replayed backlog never reopens the past. Closing a bucket
hands it to the anomaly detector; gaps close as empty buckets so a stopped model shows zero
traffic rather than its last busy second.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01


class SeriesKey(NamedTuple):
    model: str
    version: int
    arm: str


def new_sketch() -> DDSketch:
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


@dataclass(slots=True)
class Bucket:
    """One time slice of one series."""

    start: float
    seconds: float
    requests: int = 0
    errors: int = 0
    rows: int = 0
    out_of_range_rows: int = 0
    latency: DDSketch = field(default_factory=new_sketch)
    callers: Counter[str] = field(default_factory=Counter)
    caller_suspicious: Counter[str] = field(default_factory=Counter)

    @property
    def end(self) -> float:
        return self.start + self.seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float | None:
        return _quantile(self.latency, q)


def _quantile(sketch: DDSketch, q: float) -> float | None:
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A window of one series, merged from its buckets."""

    requests: int
    errors: int
    rows: int
    seconds: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Series:
    closed: deque[Bucket]
    open: dict[int, Bucket] = field(default_factory=dict)
    last_closed: int | None = None
    last_seen: float = 0.0
    total_requests: int = 0
    total_errors: int = 0


class MetricWindows:
    """Every series' buckets; ``bucket_s`` wide, ``history`` of them kept per series."""

    def __init__(self, *, bucket_s: float = 10.0, history: int = 360, grace_s: float | None = None) -> None:
        if bucket_s <= 0 or history < 2:
            raise ValueError("bucket_s must be positive and history at least 2")
        self.bucket_s = bucket_s
        self.history = history
        self.grace_s = bucket_s / 2 if grace_s is None else grace_s
        self._series: dict[SeriesKey, _Series] = {}

    def __contains__(self, key: SeriesKey) -> bool:
        return key in self._series

    def series(self) -> list[SeriesKey]:
        return list(self._series)

    def record(
        self,
        key: SeriesKey,
        *,
        timestamp: float,
        now: float,
        latency_ms: float,
        error: bool,
        rows: int = 1,
        out_of_range_rows: int = 0,
        caller: str | None = None,
        suspicious: bool = False,
    ) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(closed=deque(maxlen=self.history))
        index = int(min(timestamp, now) // self.bucket_s)
        if series.last_closed is not None and index <= series.last_closed:
            index = min(series.open) if series.open else series.last_closed + 1
        bucket = series.open.get(index)
        if bucket is None:
            bucket = series.open[index] = Bucket(start=index * self.bucket_s, seconds=self.bucket_s)
        bucket.requests += 1
        bucket.rows += rows
        bucket.out_of_range_rows += out_of_range_rows
        if error:
            bucket.errors += 1
            series.total_errors += 1
        if latency_ms >= 0 and math.isfinite(latency_ms):
            bucket.latency.add(max(latency_ms, 1e-3))
        if caller is not None:
            bucket.callers[caller] += 1
            if suspicious:
                bucket.caller_suspicious[caller] += 1
        series.total_requests += 1
        series.last_seen = max(series.last_seen, now)

    def close_until(self, now: float) -> list[tuple[SeriesKey, Bucket]]:
        """Close every bucket that ended at least ``grace_s`` before ``now``, gaps included."""
        done: list[tuple[SeriesKey, Bucket]] = []
        last_closable = int((now - self.grace_s) // self.bucket_s) - 1
        for key, series in self._series.items():
            if series.last_closed is None:
                if not series.open:
                    continue
                series.last_closed = min(series.open) - 1
            # Empty buckets are emitted for gaps, but never more than the history holds.
            first = max(series.last_closed + 1, last_closable - self.history + 1)
            for index in range(first, last_closable + 1):
                bucket = series.open.pop(index, None) or Bucket(
                    start=index * self.bucket_s, seconds=self.bucket_s
                )
                series.closed.append(bucket)
                done.append((key, bucket))
            series.last_closed = max(series.last_closed, last_closable)
            for index in [i for i in series.open if i <= last_closable]:  # beyond the history
                del series.open[index]
        return done

    def _buckets(self, key: SeriesKey, since: float) -> Iterator[Bucket]:
        series = self._series.get(key)
        if series is None:
            return
        for bucket in series.closed:
            if bucket.end > since:
                yield bucket
        for index in sorted(series.open):
            bucket = series.open[index]
            if bucket.end > since:
                yield bucket

    def stats(self, key: SeriesKey, *, seconds: float, now: float) -> WindowStats:
        """The last ``seconds`` of one series (closed and open buckets)."""
        return self.stats_of([key], seconds=seconds, now=now)

    def stats_of(self, keys: Iterable[SeriesKey], *, seconds: float, now: float) -> WindowStats:
        """The last ``seconds`` of several series merged into one: requests add up, latency
        quantiles come from the merged sketches (exact merges, still within 1 %)."""
        since = now - seconds
        sketch = new_sketch()
        requests = errors = rows = 0
        first_start: float | None = None
        for key in keys:
            for bucket in self._buckets(key, since):
                requests += bucket.requests
                errors += bucket.errors
                rows += bucket.rows
                if bucket.latency.count:
                    sketch.merge(bucket.latency)
                if bucket.requests and (first_start is None or bucket.start < first_start):
                    first_start = bucket.start
        span = seconds if first_start is None else min(seconds, max(now - first_start, self.bucket_s))
        return WindowStats(
            requests=requests,
            errors=errors,
            rows=rows,
            seconds=span,
            latency_p50_ms=_quantile(sketch, 0.5),
            latency_p95_ms=_quantile(sketch, 0.95),
            latency_p99_ms=_quantile(sketch, 0.99),
        )

    def points(self, key: SeriesKey, *, limit: int) -> list[Bucket]:
        """The most recent ``limit`` buckets of a series, oldest first (open ones included)."""
        series = self._series.get(key)
        if series is None:
            return []
        buckets = list(series.closed) + [series.open[i] for i in sorted(series.open)]
        return buckets[-limit:]

    def totals(self, key: SeriesKey) -> tuple[int, int]:
        series = self._series.get(key)
        return (series.total_requests, series.total_errors) if series else (0, 0)

    def last_seen(self, key: SeriesKey) -> float | None:
        series = self._series.get(key)
        return series.last_seen if series else None

    def forget(self, key: SeriesKey) -> None:
        self._series.pop(key, None)
