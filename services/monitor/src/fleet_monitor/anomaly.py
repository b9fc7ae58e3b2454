"""Anomalies: closed buckets against robust baselines, with a firing → resolved lifecycle.

Latency (bucket p95), error rate and traffic each keep a rolling baseline of recent buckets:
the median, and the median absolute deviation scaled to a standard deviation (1.4826 · MAD). A
bucket is anomalous when it lies more than ``k`` deviations from the median *and* clears an
absolute floor (a model whose latency never varies must not page on 1 ms of jitter). A metric
fires after ``fire_after`` anomalous buckets in a row and resolves after ``resolve_after`` normal
ones; anomalous buckets never enter the baseline, so a long incident does not become normal.

Two request-pattern rules need no baseline: a flood of rows outside the training range, and one
caller probing a model (many requests, most of them errors or outside the training range).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Literal

from fleet_monitor.windows import Bucket, SeriesKey

Metric = Literal["latency", "error_rate", "traffic", "out_of_range_inputs", "probing"]


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    k: float = 5.0
    """Deviations (1.4826 · MAD) from the median that make a bucket anomalous."""
    warmup_buckets: int = 10
    """Buckets of history before a baseline judges anything."""
    baseline_buckets: int = 60
    fire_after: int = 2
    resolve_after: int = 3
    min_requests: int = 5
    """A bucket with fewer requests says nothing about latency or error rate."""
    latency_floor_ms: float = 10.0
    latency_floor_ratio: float = 1.5
    error_rate_floor: float = 0.05
    traffic_floor_ratio: float = 3.0
    out_of_range_share: float = 0.2
    out_of_range_min_rows: int = 10
    probe_min_requests: int = 30
    probe_share: float = 0.5


@dataclass(frozen=True, slots=True)
class AnomalyChange:
    """A metric of one series started firing or resolved."""

    key: SeriesKey
    metric: Metric
    state: Literal["firing", "resolved"]
    value: float
    baseline: float
    threshold: float
    detail: str


@dataclass(slots=True)
class RobustBaseline:
    values: deque[float]

    def median(self) -> float:
        return statistics.median(self.values)

    def deviation(self) -> float:
        med = self.median()
        return 1.4826 * statistics.median(abs(v - med) for v in self.values)


@dataclass(slots=True)
class _State:
    baseline: RobustBaseline
    firing: bool = False
    streak: int = 0  # anomalous buckets in a row (not firing) or normal ones (firing)
    last_value: float = 0.0


@dataclass(slots=True)
class _Judgement:
    anomalous: bool
    value: float
    baseline: float
    threshold: float
    detail: str


class AnomalyDetector:
    """Per-series baselines and the state of each metric."""

    def __init__(self, thresholds: AnomalyThresholds | None = None) -> None:
        self.thresholds = thresholds or AnomalyThresholds()
        self._states: dict[tuple[SeriesKey, Metric], _State] = {}

    def firing(self) -> list[tuple[SeriesKey, Metric]]:
        return [key for key, state in self._states.items() if state.firing]

    def is_firing(self, key: SeriesKey, metric: Metric) -> bool:
        state = self._states.get((key, metric))
        return bool(state and state.firing)

    def forget(self, key: SeriesKey) -> None:
        for state_key in [k for k in self._states if k[0] == key]:
            del self._states[state_key]

    def observe(
        self, key: SeriesKey, bucket: Bucket, thresholds: AnomalyThresholds | None = None
    ) -> list[AnomalyChange]:
        t = thresholds or self.thresholds
        changes: list[AnomalyChange] = []
        if bucket.requests >= t.min_requests:
            p95 = bucket.quantile(0.95)
            if p95 is not None:
                changes += self._baseline_metric(key, "latency", p95, t, self._latency_rule)
            changes += self._baseline_metric(key, "error_rate", bucket.error_rate, t, self._error_rule)
        changes += self._baseline_metric(key, "traffic", bucket.rps, t, self._traffic_rule)
        changes += self._rule_metric(key, "out_of_range_inputs", self._out_of_range(bucket, t), t)
        changes += self._rule_metric(key, "probing", self._probing(bucket, t), t)
        return changes

    # ----------------------------------------------------------------- rules

    @staticmethod
    def _latency_rule(value: float, med: float, dev: float, t: AnomalyThresholds) -> _Judgement:
        limit = max(med + t.k * dev, med * t.latency_floor_ratio, med + t.latency_floor_ms)
        return _Judgement(
            value > limit, value, med, limit, f"p95 {value:.1f} ms against a baseline of {med:.1f} ms"
        )

    @staticmethod
    def _error_rule(value: float, med: float, dev: float, t: AnomalyThresholds) -> _Judgement:
        limit = max(med + t.k * dev, med + t.error_rate_floor)
        return _Judgement(value > limit, value, med, limit, f"error rate {value:.1%} against {med:.1%}")

    @staticmethod
    def _traffic_rule(value: float, med: float, dev: float, t: AnomalyThresholds) -> _Judgement:
        upper = max(med + t.k * dev, med * t.traffic_floor_ratio, 1.0)
        if value > upper:
            return _Judgement(True, value, med, upper, f"traffic surged to {value:.1f} req/s from {med:.1f}")
        lower = med / t.traffic_floor_ratio
        if med >= 1.0 and value < lower and value < med - t.k * dev:
            return _Judgement(True, value, med, lower, f"traffic dropped to {value:.1f} req/s from {med:.1f}")
        return _Judgement(False, value, med, upper, "")

    @staticmethod
    def _out_of_range(bucket: Bucket, t: AnomalyThresholds) -> _Judgement:
        share = bucket.out_of_range_rows / bucket.rows if bucket.rows else 0.0
        anomalous = bucket.out_of_range_rows >= t.out_of_range_min_rows and share >= t.out_of_range_share
        detail = f"{bucket.out_of_range_rows} of {bucket.rows} rows outside the training range"
        return _Judgement(anomalous, share, 0.0, t.out_of_range_share, detail)

    @staticmethod
    def _probing(bucket: Bucket, t: AnomalyThresholds) -> _Judgement:
        """One caller whose requests are mostly errors or out of range while everyone else's are
        not. With no other traffic to compare, a shifted population and a prober look alike: that
        is drift's business, not probing."""
        worst, worst_share, worst_requests = "", 0.0, 0
        for caller, requests in bucket.callers.items():
            if requests < t.probe_min_requests:
                continue
            share = bucket.caller_suspicious[caller] / requests
            if share > worst_share:
                worst, worst_share, worst_requests = caller, share, requests
        others = sum(bucket.callers.values()) - worst_requests
        others_share = (
            (sum(bucket.caller_suspicious.values()) - bucket.caller_suspicious[worst]) / others
            if others
            else 1.0
        )
        anomalous = (
            worst_share >= t.probe_share and others >= t.min_requests and others_share < t.probe_share / 5
        )
        detail = (
            f"caller {worst} sent {worst_requests} requests, {worst_share:.0%} of them errors or outside "
            f"the training range (other callers: {others_share:.0%} of {others})"
        )
        return _Judgement(anomalous, worst_share, 0.0, t.probe_share, detail)

    # ----------------------------------------------------------------- lifecycle

    def _state(self, key: SeriesKey, metric: Metric, t: AnomalyThresholds) -> _State:
        state = self._states.get((key, metric))
        if state is None:
            state = self._states[(key, metric)] = _State(RobustBaseline(deque(maxlen=t.baseline_buckets)))
        return state

    def _baseline_metric(self, key, metric, value, t, rule) -> list[AnomalyChange]:  # type: ignore[no-untyped-def]
        state = self._state(key, metric, t)
        if len(state.baseline.values) < t.warmup_buckets:
            state.baseline.values.append(value)
            return []
        judgement = rule(value, state.baseline.median(), state.baseline.deviation(), t)
        if not judgement.anomalous and not state.firing:
            state.baseline.values.append(value)
        return self._advance(key, metric, state, judgement, t)

    def _rule_metric(
        self, key: SeriesKey, metric: Metric, judgement: _Judgement, t: AnomalyThresholds
    ) -> list[AnomalyChange]:
        if not judgement.anomalous and (key, metric) not in self._states:
            return []
        return self._advance(key, metric, self._state(key, metric, t), judgement, t)

    @staticmethod
    def _advance(
        key: SeriesKey, metric: Metric, state: _State, j: _Judgement, t: AnomalyThresholds
    ) -> list[AnomalyChange]:
        if state.firing == j.anomalous:
            state.streak = 0
            return []
        state.streak += 1
        if not state.firing and state.streak >= t.fire_after:
            state.firing, state.streak = True, 0
            return [AnomalyChange(key, metric, "firing", j.value, j.baseline, j.threshold, j.detail)]
        if state.firing and state.streak >= t.resolve_after:
            state.firing, state.streak = False, 0
            detail = f"{metric} back within bounds ({j.value:.3g}, threshold {j.threshold:.3g})"
            return [AnomalyChange(key, metric, "resolved", j.value, j.baseline, j.threshold, detail)]
        return []


__all__ = ["AnomalyChange", "AnomalyDetector", "AnomalyThresholds", "Metric"]
