"""Prometheus exposition of the monitor's windows, drift, performance and alerts.

A custom collector reads the engine's memory at scrape time, so series exist exactly as long as
the engine tracks them and never go stale. Labels are bounded: model, version, arm (two
values) and team, plus the feature names of a version's signature for drift scores; which models
keep their own series is ``FLEET_METRICS_MODEL_SERIES`` (``fleet_core.model_series``); at most
``max_series`` (model, version, arm) series are exported and the rest are counted in
``fleet_monitor_series_dropped``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet_core.model_series import OTHER, FoldedTotals, ModelSeriesPolicy, ModelSeriesSelector
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.entities import Alert
from fleet_monitor.windows import SeriesKey, WindowStats

QUANTILES = ("0.5", "0.95", "0.99")


class MonitorCollector(Collector):
    """Reads the engine at scrape time. With ``FLEET_METRICS_MODEL_SERIES`` other than ``all``, the
    models outside the kept set (the busiest, plus any with a firing alert) are folded into
    ``model="_other"`` per arm and team: their counters keep adding up there, their rates and
    error rates are pooled and their latency quantiles come from the merged sketches. A model's own
    counters count only what it served while it held its own series (``fleet_core.model_series``
    gives the rule), so no exported counter goes backwards when a model moves in or out."""

    def __init__(
        self,
        engine: MonitorEngine,
        *,
        max_series: int,
        firing: list[Alert],
        series: ModelSeriesSelector | None = None,
    ) -> None:
        self.engine = engine
        self.max_series = max_series
        self.firing = firing  # replaced in place by the app's refresh loop
        self.series = series or ModelSeriesSelector(ModelSeriesPolicy())
        self._totals: FoldedTotals[SeriesKey, tuple[str, str]] = FoldedTotals()
        self._entered: dict[str, float] = {}  # model -> when it took its own series (wall clock)
        self._ranked = False

    def _kept(self, keys: list[SeriesKey], stats: dict[SeriesKey, WindowStats]) -> set[str] | None:
        """The models with their own series now; None when every model has them."""
        series = self.series
        if series.policy.mode == "all":
            return None
        series.pin(a.model for a in self.firing)
        if series.policy.mode == "top" and (not self._ranked or series.due()):
            traffic: dict[str, float] = {}
            for key in keys:
                traffic[key.model] = traffic.get(key.model, 0.0) + stats[key].requests
            series.rerank(traffic)
            self._ranked = True
        return {model for model in {k.model for k in keys} if series.keeps(model)}

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        now = engine.clock()
        window = engine.settings.window_s
        labels = ["model", "version", "arm", "team"]
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

        def export(values: list[str], stats: WindowStats) -> None:
            rate.add_metric(values, stats.rps)
            error_rate.add_metric(values, stats.error_rate)
            for q, value in zip(
                QUANTILES, (stats.latency_p50_ms, stats.latency_p95_ms, stats.latency_p99_ms), strict=True
            ):
                if value is not None:
                    latency.add_metric([*values, q], value)

        keys = sorted(engine.windows.series())
        stats = {key: engine.windows.stats(key, seconds=window, now=now) for key in keys}
        kept = self._kept(keys, stats)
        own: list[tuple[SeriesKey, tuple[float, ...]]] = []
        folded: dict[tuple[str, str], list[SeriesKey]] = {}
        wall = time.time()
        for key in keys:
            team = engine.team_of(key.model) or ""
            keep = kept is None or key.model in kept
            requests_errors = tuple(float(n) for n in engine.windows.totals(key))
            values = self._totals.split(key, requests_errors, kept=keep, fold_key=(key.arm, team))
            if values is None:
                self._entered.pop(key.model, None)
                folded.setdefault((key.arm, team), []).append(key)
            else:
                self._entered.setdefault(key.model, wall)
                own.append((key, values))
        self._totals.forget(keys)
        exported, dropped = own[: self.max_series], max(len(own) - self.max_series, 0)
        for key, (served, failed) in exported:
            values = [key.model, str(key.version), key.arm, engine.team_of(key.model) or ""]
            created = self._entered.get(key.model) if kept is not None else None
            requests.add_metric(values, served, created=created)
            errors.add_metric(values, failed, created=created)
            export(values, stats[key])
        for (arm, team), (folded_requests, folded_errors) in sorted(self._totals.folded.items()):
            values = [OTHER, OTHER, arm, team]
            requests.add_metric(values, folded_requests)
            errors.add_metric(values, folded_errors)
            export(values, engine.windows.stats_of(folded.get((arm, team), []), seconds=window, now=now))
        yield from (requests, errors, rate, error_rate, latency)
        shown = None if kept is None else set(kept)

        drift_active = GaugeMetricFamily(
            "fleet_model_drift_active", "1 while a drift episode is open", labels=["model", "version", "kind"]
        )
        drift_score = GaugeMetricFamily(
            "fleet_model_drift_score",
            "Latest drift statistic per feature and test",
            labels=["model", "version", "feature", "test"],
        )
        for (model, version, kind), latest in sorted(engine.latest_drift.items()):
            if shown is not None and model not in shown:
                continue
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
            if shown is not None and model not in shown:
                continue
            for metric, value in metrics.items():
                performance.add_metric([model, str(version), metric], value)
        yield performance

        anomaly = GaugeMetricFamily(
            "fleet_monitor_anomaly_active",
            "1 while an anomaly is firing",
            labels=["model", "version", "metric"],
        )
        for key, metric in sorted(engine.anomalies.firing()):
            if shown is not None and key.model not in shown:
                continue
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
        outcomes = CounterMetricFamily(
            "fleet_monitor_outcomes",
            "Business outcomes (outcome.recorded), joined to the arm that served or not",
            labels=["join"],
        )
        outcomes.add_metric(["joined"], engine.counters.outcomes)
        outcomes.add_metric(["unjoined"], engine.counters.outcomes_unjoined)
        yield outcomes
        models_folded = GaugeMetricFamily(
            "fleet_monitor_models_folded",
            'Models counted in model="_other" rather than their own series (FLEET_METRICS_MODEL_SERIES)',
        )
        models_folded.add_metric([], 0 if shown is None else len({k.model for k in keys} - shown))
        yield models_folded
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
