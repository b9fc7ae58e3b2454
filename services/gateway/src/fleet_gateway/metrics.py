"""The gateway's Prometheus instruments: requests and latency by model, version, arm, status and
team, and what the inference log shed.

Requests and latency are kept as plain cumulative numbers per (model, version, arm, status) and
exported by a collector at scrape time, which is where ``FLEET_METRICS_MODEL_SERIES``
(``fleet_core.model_series``) folds the models outside the kept set into ``model="_other"``: deciding
at the scrape, not between scrapes, is what lets every request count exactly once and no counter go
backwards when a model moves in or out of the top N.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from fleet_core.model_series import OTHER, FoldedTotals, ModelSeriesPolicy, ModelSeriesSelector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BUCKET_LABELS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]

RequestKey = tuple[str, str, str, str]  # model, version, arm, status
LatencyKey = tuple[str, str, str]  # model, version, arm


class _Latency:
    """One latency histogram's raw numbers: a count per bucket (not cumulative), and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def totals(self) -> tuple[float, ...]:
        """Cumulative bucket counts (the last is the count), then the sum."""
        running, out = 0, []
        for count in self.counts:
            running += count
            out.append(float(running))
        return (*out, self.total)


class GatewayMetrics:
    """Instruments on the service's registry. ``observe`` is the per-request hot path: two dict
    lookups and two additions; the per-model families are built at scrape time."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        series: ModelSeriesSelector | None = None,
        team_of: Callable[[str], str | None] = lambda model: None,
    ) -> None:
        self.series = series or ModelSeriesSelector(ModelSeriesPolicy())
        self.team_of = team_of
        self._requests: dict[RequestKey, int] = {}
        self._latency: dict[LatencyKey, _Latency] = {}
        registry.register(_ModelCollector(self))
        self.logs_shed = Counter(
            "fleet_gateway_inference_logs_shed",
            "Inference log records dropped: queue full, or the broker away",
            ["reason"],
            registry=registry,
        )
        self.logs_sent = Counter(
            "fleet_gateway_inference_logs_sent", "Inference log records acknowledged", registry=registry
        )
        self.audit_dropped = Counter(
            "fleet_gateway_audit_dropped",
            "Audit entries of refused attempts dropped: queue full, or the broker away",
            registry=registry,
        )
        self.log_queue = Gauge(
            "fleet_gateway_inference_log_queue", "Inference log records waiting", registry=registry
        )
        self.route_updates = Counter(
            "fleet_gateway_route_updates",
            "Route table updates by source and outcome",
            ["source", "outcome"],
            registry=registry,
        )
        self.replica_retries = Counter(
            "fleet_gateway_replica_retries",
            "Model calls sent again because the replica that had them died (ActorDiedError, ...)",
            ["reason"],
            registry=registry,
        )

    def observe(self, model: str, version: int | str, arm: str, status: int, seconds: float) -> None:
        key = (model, str(version), arm, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(key[:3])
        if latency is None:
            latency = self._latency[key[:3]] = _Latency()
        latency.observe(seconds)
        self.series.count(model)

    def replica_retry(self, reason: str) -> None:
        self.replica_retries.labels(reason).inc()

    def shed(self, reason: str, count: int = 1) -> None:
        self.logs_shed.labels(reason).inc(count)

    def shed_total(self) -> float:
        return sum(
            s.value
            for metric in self.logs_shed.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        )


class _ModelCollector(Collector):
    """``fleet_gateway_requests`` and ``fleet_gateway_request_duration_seconds`` at scrape time."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self.requests: FoldedTotals[RequestKey, tuple[str, str, str]] = FoldedTotals()
        self.latency: FoldedTotals[LatencyKey, tuple[str, str]] = FoldedTotals()

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        series = metrics.series
        if series.due():
            series.rerank()
        teams: dict[str, str] = {}

        def team(model: str) -> str:
            found = teams.get(model)
            if found is None:
                found = teams[model] = metrics.team_of(model) or ""
            return found

        labels = ["model", "version", "arm", "status", "team"]
        requests = CounterMetricFamily(
            "fleet_gateway_requests",
            "Inference requests by model, version, arm, HTTP status and team",
            labels=labels,
        )
        for key, count in sorted(metrics._requests.items()):
            model, version, arm, status = key
            own = self.requests.split(
                key, (float(count),), kept=series.keeps(model), fold_key=(arm, status, team(model))
            )
            if own is not None:
                requests.add_metric([model, version, arm, status, team(model)], own[0])
        for (arm, status, team_name), (count,) in sorted(self.requests.folded.items()):
            requests.add_metric([OTHER, OTHER, arm, status, team_name], count)
        yield requests

        latency = HistogramMetricFamily(
            "fleet_gateway_request_duration_seconds",
            "Inference latency (validation + model call) by model, version, arm and team",
            labels=["model", "version", "arm", "team"],
        )

        def histogram(values: list[str], totals: tuple[float, ...] | list[float]) -> None:
            latency.add_metric(values, list(zip(BUCKET_LABELS, totals[:-1], strict=True)), totals[-1])

        for lkey, raw in sorted(metrics._latency.items()):
            model, version, arm = lkey
            own = self.latency.split(
                lkey, raw.totals(), kept=series.keeps(model), fold_key=(arm, team(model))
            )
            if own is not None:
                histogram([model, version, arm, team(model)], own)
        for (arm, team_name), totals in sorted(self.latency.folded.items()):
            histogram([OTHER, OTHER, arm, team_name], totals)
        yield latency
