"""The monitor engine: turns the event streams into windows, verdicts, alerts and events.

``ingest`` takes a batch of ``inference.logged`` payloads and only updates memory (windows, drift
and performance accumulators, the prediction cache, rollout samples, the lake buffer), so it keeps
pace with the broker; everything that writes to the database or the broker happens in ``settle``
(closed drift windows) and ``tick`` (closed buckets → anomalies, rollout analysis), called by the
consumers and a timer. Episodes and alerts change state once per episode, and each change commits
with the event that announces it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleet_core.events import (
    AnomalyDetected,
    DriftDetected,
    FeatureDrift,
    InferenceFeedback,
    InferenceLogged,
    ModelRegistered,
    OutcomeRecorded,
    RetrainCompleted,
    RolloutAnalysis,
    RolloutUpdated,
    Topic,
    VersionChecked,
)
from fleet_core.log import get_logger
from fleet_core.privacy import EMBEDDED_PII_SALT, PiiHasher
from fleet_core.schemas import CategoricalProfile, NumericProfile, ReferenceProfile
from fleet_monitor.analysis import KPIS, AnalysisPolicy, ArmSample, Finding, analyse_ab, analyse_canary
from fleet_monitor.anomaly import AnomalyChange, AnomalyDetector, AnomalyThresholds
from fleet_monitor.config import ModelConfig
from fleet_monitor.drift import PREDICTION, DriftEpisodes, DriftReport, DriftThresholds, DriftWindow
from fleet_monitor.entities import Alert, AlertDraft, alert_fingerprint
from fleet_monitor.lake import InferenceLake
from fleet_monitor.performance import (
    CachedPrediction,
    PerformanceWindow,
    PredictionCache,
    ServedIndex,
    concept_scores,
    scalar_output,
)
from fleet_monitor.privacy import drift_profile
from fleet_monitor.store import MonitorStore
from fleet_monitor.windows import MetricWindows, SeriesKey

log = get_logger(__name__)

UNKNOWN_RETRY_S = 60.0
RETRAINS_KEPT = 20
ACTIVE_PHASES = frozenset({"pending", "progressing", "paused"})
ANALYSED_STRATEGIES = frozenset({"canary", "ab"})
VersionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    bucket_s: float = 10.0
    history_buckets: int = 360
    window_s: float = 60.0
    """The sliding window behind rates, error rates and latency quantiles."""
    analysis_interval_s: float = 10.0
    idle_after_s: float = 300.0
    anomaly: AnomalyThresholds = field(default_factory=AnomalyThresholds)
    defaults: ModelConfig = field(default_factory=ModelConfig)
    pii_salt: str | None = EMBEDDED_PII_SALT
    """The gateway's ``FLEET_PII_SALT``: PII categories of reference profiles are hashed with it;
    None leaves PII fields out of drift and range checks."""


@dataclass(slots=True)
class VersionInfo:
    """A version as the monitor uses it: profile, bounds for out-of-range checks, labelled metrics."""

    registered: ModelRegistered
    features: list[str]
    numeric_bounds: dict[str, tuple[float, float]]
    categories: dict[str, frozenset[str]]
    profile: ReferenceProfile | None = None
    """The reference profile drift is scored against: PII categories hashed as the gateway logs
    them, numeric PII features left out (``fleet_monitor.privacy``)."""

    @classmethod
    def of(cls, registered: ModelRegistered, hasher: PiiHasher | None) -> VersionInfo:
        """``hasher`` is the gateway's PII hash; None (no salt known) leaves PII fields untested."""
        bounds: dict[str, tuple[float, float]] = {}
        categories: dict[str, frozenset[str]] = {}
        profile = drift_profile(registered.reference_profile, registered.signature.inputs, hasher)
        for spec in registered.signature.inputs:
            feature = profile.features.get(spec.name) if profile else None
            if spec.pii and feature is None:
                continue  # hashed: a number has no range left, a category no known hash
            if isinstance(feature, NumericProfile):
                bounds[spec.name] = (feature.minimum, feature.maximum)
            elif isinstance(feature, CategoricalProfile) and "__other__" not in feature.frequencies:
                categories[spec.name] = frozenset(feature.frequencies)
            elif spec.minimum is not None or spec.maximum is not None:
                bounds[spec.name] = (
                    -math.inf if spec.minimum is None else spec.minimum,
                    math.inf if spec.maximum is None else spec.maximum,
                )
        return cls(
            registered=registered,
            features=[f.name for f in registered.signature.inputs],
            numeric_bounds=bounds,
            categories=categories,
            profile=profile,
        )

    def out_of_range(self, row: dict[str, Any]) -> bool:
        for name, (low, high) in self.numeric_bounds.items():
            value = row.get(name)
            if isinstance(value, int | float) and not (low <= value <= high):
                return True
        for name, allowed in self.categories.items():
            value = row.get(name)
            if value is not None and str(value) not in allowed:
                return True
        return False


@dataclass(slots=True)
class LatestDrift:
    kind: str
    window_end: datetime
    rows: int
    scores: list[FeatureDrift]
    drifted: bool


@dataclass(slots=True)
class ActiveRollout:
    update: RolloutUpdated
    baseline: int | None
    candidates: list[int]
    samples: dict[int, ArmSample] = field(default_factory=dict)
    last_analysis: dict[int, RolloutAnalysis] = field(default_factory=dict)
    next_analysis_at: float = 0.0


@dataclass(slots=True)
class IngestCounters:
    events: int = 0
    rows: int = 0
    feedback: int = 0
    feedback_joined_rows: int = 0
    outcomes: int = 0
    outcomes_unjoined: int = 0
    drift_windows: int = 0
    drifted_windows: int = 0


class MonitorEngine:
    """All of the monitor's in-memory state and the rules that act on it."""

    def __init__(
        self,
        store: MonitorStore,
        *,
        settings: EngineSettings | None = None,
        lake: InferenceLake | None = None,
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[Alert], None] | None = None,
        lookup: Callable[[str, int], Awaitable[ModelRegistered | None]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or EngineSettings()
        self.lake = lake
        self.clock = clock
        self.on_alert = on_alert
        self.lookup = lookup
        self.pii = PiiHasher(self.settings.pii_salt) if self.settings.pii_salt is not None else None
        self._unknown: dict[VersionKey, float] = {}  # version seen in traffic -> next lookup time
        self.windows = MetricWindows(bucket_s=self.settings.bucket_s, history=self.settings.history_buckets)
        self.versions: dict[VersionKey, VersionInfo] = {}
        self._teams: dict[str, set[str]] = {}  # model -> teams its versions were registered under
        self.routes: dict[str, RolloutUpdated] = {}
        self.configs: dict[str, ModelConfig] = {}
        self.drift_windows: dict[VersionKey, DriftWindow] = {}
        self.latest_drift: dict[tuple[str, int, str], LatestDrift] = {}
        self.episodes = DriftEpisodes()
        self.predictions = PredictionCache()
        self.served = ServedIndex()
        self.performance: dict[VersionKey, PerformanceWindow] = {}
        self.latest_performance: dict[VersionKey, dict[str, float]] = {}
        self.anomalies = AnomalyDetector(self.settings.anomaly)
        self.rollouts: dict[str, ActiveRollout] = {}
        self.retrains: dict[str, deque[RetrainCompleted]] = {}
        # Each gated version's latest delivery state (version.checked), for the dashboard.
        self.deliveries: dict[tuple[str, int], VersionChecked] = {}
        self.counters = IngestCounters()
        self.events_by_model: dict[str, int] = {}
        """``inference.logged`` events per model, so a team's overview counts only its own traffic."""
        self._drift_thresholds: dict[str, DriftThresholds] = {}
        self._closed_drift: list[tuple[VersionKey, DriftWindow]] = []
        self._closed_concept: list[tuple[VersionKey, PerformanceWindow]] = []

    # ----------------------------------------------------------------- start-up

    async def load(self) -> None:
        """Rebuild the catalogue, routes, config and open episodes from the database."""
        async with self.store.transaction() as s:
            versions = await self.store.versions(s)
            routes = await self.store.routes(s)
            configs = await self.store.configs(s)
            firing = await self.store.alerts(s, state="firing", kind="drift", limit=10_000)
        for registered in versions:
            self._keep_version(registered)
        for update in routes:
            self._apply_route(update)
        self.configs = {m: ModelConfig.model_validate(c) for m, c in configs.items()}
        self._drift_thresholds.clear()
        for alert in firing:
            if alert.version is not None:
                self.episodes.restore(alert.model, alert.version, alert.name.removesuffix("_drift"))

    def _keep_version(self, registered: ModelRegistered) -> None:
        self.versions[(registered.model, registered.version)] = VersionInfo.of(registered, self.pii)
        self._teams.setdefault(registered.model, set()).add(registered.team)

    def team_of(self, model: str) -> str | None:
        """The team that owns ``model``, from its registered versions; None when the monitor knows
        no version of it (seen only in traffic or routes) or when versions disagree (a forged
        ``model.registered`` must not move a model into another team): callers fail closed."""
        teams = self._teams.get(model)
        return next(iter(teams)) if teams is not None and len(teams) == 1 else None

    def config(self, model: str) -> ModelConfig:
        own = self.configs.get(model)
        return self.settings.defaults.merged(own) if own else self.settings.defaults

    def drift_thresholds(self, model: str) -> DriftThresholds:
        """A model's drift thresholds, built once per config change (asked for on every event)."""
        thresholds = self._drift_thresholds.get(model)
        if thresholds is None:
            thresholds = self._drift_thresholds[model] = self.config(model).drift()
        return thresholds

    # ----------------------------------------------------------------- catalogue events

    async def on_model_registered(self, event_id: str, registered: ModelRegistered) -> None:
        async with self.store.transaction() as s:
            if not await self.store.claim(s, event_id=event_id, topic=Topic.MODEL_REGISTERED):
                return
            await self.store.save_version(s, registered)
        self._keep_version(registered)

    async def on_rollout_updated(self, event_id: str, update: RolloutUpdated) -> None:
        async with self.store.transaction() as s:
            if not await self.store.claim(s, event_id=event_id, topic=Topic.ROLLOUT_UPDATED):
                return
            kept = await self.store.save_route(s, update)
        if kept:
            self._apply_route(update)
            await self._close_finished_rollout_alerts(update)

    def _apply_route(self, update: RolloutUpdated) -> None:
        current = self.routes.get(update.model)
        if current is not None and current.routes.revision > update.routes.revision:
            return
        self.routes[update.model] = update
        active = self.rollouts.get(update.model)
        if update.strategy not in ANALYSED_STRATEGIES or update.phase not in ACTIVE_PHASES:
            self.rollouts.pop(update.model, None)
            return
        primaries = [a for a in update.routes.arms if a.mode == "primary"]
        others = sorted((a for a in primaries if a.version != update.version), key=lambda a: -a.weight)
        baseline = others[0].version if others else None
        candidates = [a.version for a in primaries if a.version != baseline]
        same_step = (
            active is not None
            and active.update.rollout_id == update.rollout_id
            and active.update.step == update.step
        )
        if same_step and active is not None:
            active.update, active.baseline, active.candidates = update, baseline, candidates
            return
        # A new rollout or a new step: compare the arms afresh, from now on.
        self.rollouts[update.model] = ActiveRollout(update=update, baseline=baseline, candidates=candidates)

    async def _close_finished_rollout_alerts(self, update: RolloutUpdated) -> None:
        if update.model in self.rollouts:
            return
        async with self.store.transaction() as s:
            resolved = await self.store.resolve_alert(
                s, alert_fingerprint("rollout", "rollout_failed", update.model, update.version)
            )
        if resolved:
            self._notify(resolved)

    def on_version_checked(self, checked: VersionChecked) -> None:
        """Keep a gated version's newest delivery state (checks, approvals) for the dashboard."""
        self.deliveries[(checked.model, checked.version)] = checked

    def on_retrain_completed(self, completed: RetrainCompleted) -> None:
        """Keep each model's recent retraining outcomes for the dashboard (newest first)."""
        jobs = self.retrains.setdefault(completed.model, deque(maxlen=RETRAINS_KEPT))
        jobs.appendleft(completed)

    # ----------------------------------------------------------------- traffic (hot path)

    def ingest(self, events: Iterable[InferenceLogged]) -> None:
        """Fold a batch of served requests into memory. Never touches the database or the broker."""
        now = self.clock()
        windows = self.windows
        for event in events:
            key = (event.model, event.version)
            info = self.versions.get(key)
            rows = event.inputs
            error = event.status != "ok"
            out_of_range = 0
            if info is None and key not in self._unknown:
                self._unknown[key] = now
            if info is not None:
                out_of_range = sum(1 for row in rows if info.out_of_range(row))
                if not error:
                    window = self.drift_windows.get(key)
                    if window is None:
                        window = self.drift_windows[key] = DriftWindow(opened_at=now)
                    window.add(rows, event.outputs, info.features)
                    if window.ready(now, self.drift_thresholds(event.model)):
                        # Closed at once: the next row opens a new window, whatever the batch size.
                        self._closed_drift.append((key, self.drift_windows.pop(key)))
            windows.record(
                SeriesKey(event.model, event.version, event.arm),
                timestamp=event.timestamp.timestamp(),
                now=now,
                latency_ms=event.latency_ms,
                error=error,
                rows=len(rows),
                out_of_range_rows=out_of_range,
                caller=event.caller,
                suspicious=error or out_of_range > 0,
            )
            rollout = self.rollouts.get(event.model)
            if rollout is not None and event.arm == "primary":
                rollout.samples.setdefault(event.version, ArmSample()).record_request(event.latency_ms, error)
            if not error and event.arm == "primary":  # a shadow's copy answered no one
                self.served.add(event.model, event.request_id, event.routing_key, event.version)
            if not error and event.outputs is not None:
                waiting = self.predictions.put(
                    event.request_id, CachedPrediction(event.model, event.version, event.arm, event.outputs)
                )
                if waiting is not None:
                    self._join(
                        CachedPrediction(event.model, event.version, event.arm, event.outputs), waiting
                    )
            if self.lake is not None:
                self.lake.add_inference(
                    model=event.model,
                    request_id=event.request_id,
                    timestamp=event.timestamp,
                    version=event.version,
                    arm=event.arm,
                    inputs=rows,
                    outputs=event.outputs,
                    latency_ms=event.latency_ms,
                    status=event.status,
                    caller=event.caller,
                    routing_key=event.routing_key,
                )
            self.counters.events += 1
            self.counters.rows += len(rows)
            self.events_by_model[event.model] = self.events_by_model.get(event.model, 0) + 1

    def ingest_feedback(self, feedback: InferenceFeedback) -> None:
        self.counters.feedback += 1
        if self.lake is not None:
            self.lake.add_feedback(
                model=feedback.model,
                request_id=feedback.request_id,
                timestamp=feedback.timestamp,
                version=feedback.version,
                labels=feedback.labels,
                source=feedback.source,
            )
        prediction = self.predictions.take(feedback.request_id, feedback.labels)
        if prediction is not None:
            self._join(prediction, feedback.labels)

    def ingest_outcome(self, outcome: OutcomeRecorded) -> None:
        """Join a business outcome to the version that served its request (or its routing key's
        arm) and count it in the running rollout's sample of that version."""
        if outcome.request_id is not None:
            # The gateway names the version that answered; the index knows it too, for a while.
            version = self.served.by_request(outcome.model, outcome.request_id) or outcome.version
        else:
            assert outcome.routing_key is not None
            version = self.served.by_key(outcome.model, outcome.routing_key)
        if version is None:
            self.counters.outcomes_unjoined += 1
            return
        self.counters.outcomes += 1
        rollout = self.rollouts.get(outcome.model)
        if rollout is not None:
            rollout.samples.setdefault(version, ArmSample()).record_outcome(outcome.kpi, outcome.value)

    def _join(self, prediction: CachedPrediction, labels: list[Any]) -> None:
        if prediction.arm != "primary":
            return
        key = (prediction.model, prediction.version)
        info = self.versions.get(key)
        task = info.registered.task if info else "classification"
        window = self.performance.get(key)
        if window is None:
            window = self.performance[key] = PerformanceWindow(task=task)
        self.counters.feedback_joined_rows += window.add(labels, prediction.outputs)
        rollout = self.rollouts.get(prediction.model)
        if rollout is not None:
            sample = rollout.samples.setdefault(prediction.version, ArmSample())
            for label, output in zip(labels, prediction.outputs, strict=False):
                if label is not None:
                    sample.record_label(scalar_output(label), scalar_output(output), task)
        if len(window) >= self.config(prediction.model).concept().window_rows:
            self._closed_concept.append((key, self.performance.pop(key)))

    # ----------------------------------------------------------------- settling (database, broker)

    async def settle(self) -> None:
        """Score every drift and performance window that is ready; raise or end episodes."""
        if self._unknown:
            await self._look_up_unknown()
        closed, self._closed_drift = self._closed_drift, []
        for key, window in closed:
            info = self.versions.get(key)
            if info is None or info.profile is None:
                continue
            config = self.drift_thresholds(key[0])
            report = window.evaluate(info.profile, config)
            self.counters.drift_windows += 1
            self.counters.drifted_windows += bool(report.drifted_features)
            await self._drift_outcome(
                key, "data", report.data, report.drifted_features, report, window, config.clear_windows
            )
            if report.prediction:
                await self._drift_outcome(
                    key,
                    "prediction",
                    report.prediction,
                    [PREDICTION] if report.prediction_drifted else [],
                    report,
                    window,
                    config.clear_windows,
                )
        concept, self._closed_concept = self._closed_concept, []
        for key, performance in concept:
            await self._concept(key, performance)

    async def _look_up_unknown(self) -> None:
        """Ask the registry about versions seen in traffic but never announced (retried each minute)."""
        now = self.clock()
        for key, due in list(self._unknown.items()):
            if key in self.versions:
                del self._unknown[key]
                continue
            if self.lookup is None or due > now:
                continue
            self._unknown[key] = now + UNKNOWN_RETRY_S
            try:
                registered = await self.lookup(*key)
            except Exception as exc:
                log.info(
                    "registry lookup failed; retrying later", model=key[0], version=key[1], error=str(exc)
                )
                continue
            if registered is not None:
                async with self.store.transaction() as s:
                    await self.store.save_version(s, registered)
                self._keep_version(registered)
                del self._unknown[key]
                log.info("version looked up in the registry", model=key[0], version=key[1])

    async def _drift_outcome(
        self,
        key: VersionKey,
        kind: str,
        scores: list[FeatureDrift],
        drifted: list[str],
        report: DriftReport,
        window: DriftWindow,
        clear_windows: int,
    ) -> None:
        model, version = key
        end = datetime.now(UTC)
        self.latest_drift[(model, version, kind)] = LatestDrift(kind, end, report.rows, scores, bool(drifted))
        change = self.episodes.observe(model, version, kind, bool(drifted), clear_windows)
        if change == "started":
            event = DriftDetected(
                model=model,
                version=version,
                kind=kind,  # type: ignore[arg-type]
                window_start=datetime.fromtimestamp(window.opened_at, UTC),
                window_end=end,
                sample_size=report.rows,
                scores=scores,
                drifted_features=drifted,
            )
            worst = max((s.statistic for s in scores if s.test == "psi" and s.drifted), default=None)
            draft = AlertDraft(
                kind="drift",
                name=f"{kind}_drift",
                model=model,
                version=version,
                severity="warning",
                summary=f"{kind} drift on {model} v{version}: {', '.join(drifted)}",
                value=worst,
                details={"drifted_features": drifted, "sample_size": report.rows},
            )
            await self._open(draft, Topic.DRIFT_DETECTED, event)
            log.info("drift episode started", model=model, version=version, kind=kind, features=drifted)
        elif change == "ended":
            await self._resolve(alert_fingerprint("drift", f"{kind}_drift", model, version), None, None)
            log.info("drift episode ended", model=model, version=version, kind=kind)

    async def _concept(self, key: VersionKey, window: PerformanceWindow) -> None:
        model, version = key
        info = self.versions.get(key)
        if not len(window):
            return
        live = window.metrics()
        self.latest_performance[key] = {**live, "labelled_rows": float(len(window))}
        if info is None:
            return
        thresholds = self.config(model).concept()
        scores = concept_scores(live, info.registered.metrics, len(window), thresholds)
        if not scores:
            return
        drifted = [s.feature for s in scores if s.drifted]
        end = datetime.now(UTC)
        self.latest_drift[(model, version, "concept")] = LatestDrift(
            "concept", end, len(window), scores, bool(drifted)
        )
        change = self.episodes.observe(
            model, version, "concept", bool(drifted), self.drift_thresholds(model).clear_windows
        )
        if change == "started":
            event = DriftDetected(
                model=model,
                version=version,
                kind="concept",
                window_start=end,
                window_end=end,
                sample_size=len(window),
                scores=scores,
                drifted_features=drifted,
            )
            registered = info.registered.metrics
            summary = ", ".join(
                f"{s.feature} {s.statistic:.3f} (registered {registered.get(s.feature, float('nan')):.3f})"
                for s in scores
                if s.drifted
            )
            draft = AlertDraft(
                kind="drift",
                name="concept_drift",
                model=model,
                version=version,
                severity="critical",
                summary=f"concept drift on {model} v{version}: {summary}",
                value=scores[0].statistic,
                details={"metrics": live, "registered": info.registered.metrics},
            )
            await self._open(draft, Topic.DRIFT_DETECTED, event)
        elif change == "ended":
            await self._resolve(alert_fingerprint("drift", "concept_drift", model, version), None, None)

    # ----------------------------------------------------------------- the timer

    async def tick(self) -> None:
        """Close buckets (anomalies), close old drift windows, analyse active rollouts."""
        now = self.clock()
        for key, bucket in self.windows.close_until(now):
            thresholds = self.config(key.model).anomaly(self.settings.anomaly)
            for change in self.anomalies.observe(key, bucket, thresholds):
                await self._anomaly(change)
        for vkey, window in list(self.drift_windows.items()):
            if window.ready(now, self.drift_thresholds(vkey[0])):
                self._closed_drift.append((vkey, self.drift_windows.pop(vkey)))
        await self.settle()
        for model, rollout in list(self.rollouts.items()):
            if now >= rollout.next_analysis_at:
                rollout.next_analysis_at = now + self.settings.analysis_interval_s
                await self._analyse(model, rollout)

    async def _anomaly(self, change: AnomalyChange) -> None:
        key = change.key
        severity = "critical" if change.metric in ("error_rate", "probing") else "warning"
        event = AnomalyDetected(
            model=key.model,
            version=key.version,
            metric=change.metric,
            state=change.state,
            value=change.value,
            baseline=change.baseline,
            threshold=change.threshold,
            severity=severity,  # type: ignore[arg-type]
            detail=f"{change.detail} (arm {key.arm})",
        )
        if change.state == "firing":
            draft = AlertDraft(
                kind="anomaly",
                name=change.metric,
                model=key.model,
                version=key.version,
                arm=key.arm,
                severity=severity,  # type: ignore[arg-type]
                summary=f"{change.metric} anomaly on {key.model} v{key.version}: {change.detail}",
                value=change.value,
                details={"baseline": change.baseline, "threshold": change.threshold, "arm": key.arm},
            )
            await self._open(draft, Topic.ANOMALY_DETECTED, event)
        else:
            await self._resolve(
                alert_fingerprint("anomaly", change.metric, key.model, key.version, key.arm),
                Topic.ANOMALY_DETECTED,
                event,
                value=change.value,
            )
        log.info("anomaly " + change.state, model=key.model, version=key.version, metric=change.metric)

    async def _analyse(self, model: str, rollout: ActiveRollout) -> None:
        update = rollout.update
        info = self.versions.get((model, update.version))
        config = self.config(model)
        policy = config.analysis()
        kpi = update.kpi or config.analysis_kpi or _default_kpi(info.registered.task if info else "other")
        baseline = rollout.samples.get(rollout.baseline) if rollout.baseline is not None else None
        for candidate_version in rollout.candidates:
            candidate = rollout.samples.get(candidate_version, ArmSample())
            finding = self._finding(update.strategy, candidate, baseline, kpi, policy)
            analysis = RolloutAnalysis(
                rollout_id=update.rollout_id,
                model=model,
                step=update.step,
                candidate_version=candidate_version,
                baseline_version=rollout.baseline if rollout.baseline is not None else candidate_version,
                verdict=finding.verdict,
                reason=finding.reason,
                candidate=candidate.metrics(kpi),
                baseline=(baseline or ArmSample()).metrics(kpi),
                p_value=finding.p_value,
                kpi=kpi,
            )
            rollout.last_analysis[candidate_version] = analysis
            async with self.store.transaction() as s:
                await self.store.publish(s, Topic.ROLLOUT_ANALYSIS, analysis)
                opened = None
                if finding.verdict == "fail" and update.strategy == "canary":
                    opened = await self.store.open_alert(
                        s,
                        AlertDraft(
                            kind="rollout",
                            name="rollout_failed",
                            model=model,
                            version=update.version,
                            severity="critical",
                            summary=f"canary of {model} v{candidate_version} failing: {finding.reason}",
                            details={"rollout_id": update.rollout_id, "step": update.step},
                        ),
                    )
            if opened:
                self._notify(opened)

    @staticmethod
    def _finding(
        strategy: str, candidate: ArmSample, baseline: ArmSample | None, kpi: str, policy: AnalysisPolicy
    ) -> Finding:
        if strategy == "ab":
            if baseline is None:
                return Finding("inconclusive", "no baseline arm to compare with")
            return analyse_ab(candidate, baseline, kpi, policy)
        return analyse_canary(candidate, baseline, policy)

    # ----------------------------------------------------------------- alerts

    async def _open(self, draft: AlertDraft, topic: Topic, event: Any) -> None:
        async with self.store.transaction() as s:
            alert = await self.store.open_alert(s, draft)
            await self.store.publish(s, topic, event)
        if alert:
            self._notify(alert)

    async def _resolve(
        self, fingerprint: str, topic: Topic | None, event: Any, *, value: float | None = None
    ) -> None:
        async with self.store.transaction() as s:
            alert = await self.store.resolve_alert(s, fingerprint, value=value)
            if topic is not None and event is not None:
                await self.store.publish(s, topic, event)
        if alert:
            self._notify(alert)

    def _notify(self, alert: Alert) -> None:
        if self.on_alert is not None:
            self.on_alert(alert)

    # ----------------------------------------------------------------- config

    async def put_config(self, model: str, config: ModelConfig, *, by: str) -> ModelConfig:
        async with self.store.transaction() as s:
            await self.store.put_config(s, model, config.model_dump(mode="json", exclude_none=True), by=by)
        self.configs[model] = config
        self._drift_thresholds.pop(model, None)
        return self.config(model)


def _default_kpi(task: str) -> str:
    return {"classification": "accuracy", "regression": "mae"}.get(task, "error_rate")


__all__ = ["KPIS", "EngineSettings", "MonitorEngine", "VersionInfo"]
