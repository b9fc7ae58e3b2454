"""The gateway's Prometheus instruments: requests and latency by model, version, arm and status,
and what the inference log shed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    """Instruments on the service's registry; label children are cached (they are looked up per request)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fleet_gateway_requests",
            "Inference requests by model, version, arm and HTTP status",
            ["model", "version", "arm", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fleet_gateway_request_duration_seconds",
            "Inference latency (validation + model call) by model, version and arm",
            ["model", "version", "arm"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
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
        self._observed: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, model: str, version: int | str, arm: str, status: int, seconds: float) -> None:
        key = (model, str(version), arm, str(status))
        children = self._observed.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(*key[:3]))
            if len(self._observed) < 10_000:
                self._observed[key] = children
        children[0].inc()
        children[1].observe(seconds)

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
