"""Prometheus exposition of the monitor's windows, drift, performance and alerts.

A custom collector reads the engine's memory at scrape time, so series exist exactly as long as
the engine tracks them and never go stale. Labels are bounded: model, version and arm (two
values), plus the feature names of a version's signature for drift scores; at most
``max_series`` (model, version, arm) series are exported and the rest are counted in
``fleet_monitor_series_dropped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet_monitor.engine import MonitorEngine
from fleet_monitor.entities import Alert

QUANTILES = ("0.5", "0.95", "0.99")


class MonitorCollector(Collector):
    def __init__(self, engine: MonitorEngine, *, max_series: int, firing: list[Alert]) -> None:
        self.engine = engine
        self.max_series = max_series
        self.firing = firing  # replaced in place by the app's refresh loop

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        now = engine.clock()
        labels = ["model", "version", "arm"]
        requests = CounterMetricFamily("fleet_model_requests", "Requests served (as logged)", labels=labels)
        errors = CounterMetricFamily("fleet_model_errors", "Requests that failed", labels=labels)
        rate = GaugeMetricFamily(
            "fleet_model_request_rate", "Requests per second over the window", labels=labels
        )
        error_rate = GaugeMetricFamily(
            "fleet_model_error_rate", "Share of failed requests over the window", labels=labels
        )
        latency = GaugeMetricFamily(
            "fleet_model_latency_ms",
            "Latency quantiles over the window (DDSketch, 1% accuracy)",
            labels=[*labels, "quantile"],
        )
        keys = sorted(engine.windows.series())
        exported, dropped = keys[: self.max_series], max(len(keys) - self.max_series, 0)
        for key in exported:
            values = [key.model, str(key.version), key.arm]
            total, failed = engine.windows.totals(key)
            requests.add_metric(values, total)
            errors.add_metric(values, failed)
            stats = engine.windows.stats(key, seconds=engine.settings.window_s, now=now)
            rate.add_metric(values, stats.rps)
            error_rate.add_metric(values, stats.error_rate)
            for q, value in zip(
                QUANTILES, (stats.latency_p50_ms, stats.latency_p95_ms, stats.latency_p99_ms), strict=True
            ):
                if value is not None:
                    latency.add_metric([*values, q], value)
        yield from (requests, errors, rate, error_rate, latency)

        drift_active = GaugeMetricFamily(
            "fleet_model_drift_active", "1 while a drift episode is open", labels=["model", "version", "kind"]
        )
        drift_score = GaugeMetricFamily(
            "fleet_model_drift_score",
            "Latest drift statistic per feature and test",
            labels=["model", "version", "feature", "test"],
        )
        for (model, version, kind), latest in sorted(engine.latest_drift.items()):
            drift_active.add_metric(
                [model, str(version), kind], float(engine.episodes.active(model, version, kind))
            )
            for score in latest.scores:
                drift_score.add_metric([model, str(version), score.feature, score.test], score.statistic)
        yield from (drift_active, drift_score)

        performance = GaugeMetricFamily(
            "fleet_model_performance",
            "Labelled performance of the latest window",
            labels=["model", "version", "metric"],
        )
        for (model, version), metrics in sorted(engine.latest_performance.items()):
            for metric, value in metrics.items():
                performance.add_metric([model, str(version), metric], value)
        yield performance

        anomaly = GaugeMetricFamily(
            "fleet_monitor_anomaly_active",
            "1 while an anomaly is firing",
            labels=["model", "version", "metric"],
        )
        for key, metric in sorted(engine.anomalies.firing()):
            anomaly.add_metric([key.model, str(key.version), metric], 1.0)
        yield anomaly

        by_kind: Counter[tuple[str, str]] = Counter((a.kind, a.severity) for a in self.firing)
        alerts = GaugeMetricFamily(
            "fleet_monitor_alerts_firing", "Alerts firing", labels=["kind", "severity"]
        )
        for (kind, severity), count in sorted(by_kind.items()):
            alerts.add_metric([kind, severity], count)
        yield alerts

        ingested = CounterMetricFamily(
            "fleet_monitor_events_ingested", "inference.logged events folded into windows"
        )
        ingested.add_metric([], engine.counters.events)
        yield ingested
        feedback = CounterMetricFamily(
            "fleet_monitor_feedback_rows_joined", "Labelled rows joined to their prediction"
        )
        feedback.add_metric([], engine.counters.feedback_joined_rows)
        yield feedback
        series_dropped = GaugeMetricFamily(
            "fleet_monitor_series_dropped", "Series tracked but not exported (over max_series)"
        )
        series_dropped.add_metric([], dropped)
        yield series_dropped
        if engine.lake is not None:
            lake = CounterMetricFamily(
                "fleet_monitor_lake_rows", "Rows in the inference lake", labels=["outcome"]
            )
            lake.add_metric(["written"], engine.lake.rows_written)
            lake.add_metric(["dropped"], engine.lake.rows_dropped)
            yield lake
