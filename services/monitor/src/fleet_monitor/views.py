"""Read models built from the engine's memory and the store: what the API and dashboard show."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fleet_monitor.api.schemas import (
    ArmView,
    DriftView,
    LiveStats,
    ModelDetail,
    ModelSummary,
    Overview,
    RolloutView,
    SeriesPoint,
    SeriesView,
    VersionView,
)
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.entities import Alert
from fleet_monitor.windows import SeriesKey, WindowStats

KINDS = ("data", "prediction", "concept")


def _live(stats: WindowStats) -> LiveStats:
    return LiveStats(
        requests=stats.requests,
        rps=round(stats.rps, 3),
        error_rate=round(stats.error_rate, 4),
        latency_p50_ms=stats.latency_p50_ms,
        latency_p95_ms=stats.latency_p95_ms,
        latency_p99_ms=stats.latency_p99_ms,
    )


def model_names(engine: MonitorEngine) -> list[str]:
    names = {m for m, _ in engine.versions} | set(engine.routes) | {k.model for k in engine.windows.series()}
    return sorted(names)


def _primary_keys(engine: MonitorEngine, model: str) -> list[SeriesKey]:
    return [k for k in engine.windows.series() if k.model == model and k.arm == "primary"]


def _merged_live(engine: MonitorEngine, keys: list[SeriesKey], now: float) -> LiveStats:
    """Requests and errors add up; quantiles come from the busiest series (one model, few versions)."""
    window = engine.settings.window_s
    stats = [engine.windows.stats(k, seconds=window, now=now) for k in keys]
    if not stats:
        return LiveStats(
            requests=0, rps=0, error_rate=0, latency_p50_ms=None, latency_p95_ms=None, latency_p99_ms=None
        )
    busiest = max(stats, key=lambda s: s.requests)
    requests = sum(s.requests for s in stats)
    errors = sum(s.errors for s in stats)
    return LiveStats(
        requests=requests,
        rps=round(sum(s.rps for s in stats), 3),
        error_rate=round(errors / requests, 4) if requests else 0.0,
        latency_p50_ms=busiest.latency_p50_ms,
        latency_p95_ms=max((s.latency_p95_ms for s in stats if s.latency_p95_ms is not None), default=None),
        latency_p99_ms=max((s.latency_p99_ms for s in stats if s.latency_p99_ms is not None), default=None),
    )


def _state(engine: MonitorEngine, model: str, now: float) -> tuple[str, datetime | None]:
    seen = [engine.windows.last_seen(k) for k in engine.windows.series() if k.model == model]
    last = max((s for s in seen if s), default=None)
    route = engine.routes.get(model)
    in_traffic = route is not None and any(a.weight > 0 or a.mode == "shadow" for a in route.routes.arms)
    last_at = datetime.fromtimestamp(last, UTC) if last else None
    if not in_traffic and last is None:
        return "not deployed", None
    if last is None or now - last > engine.settings.idle_after_s:
        return "idle", last_at
    return "serving", last_at


def _rollout(engine: MonitorEngine, model: str) -> RolloutView | None:
    update = engine.routes.get(model)
    if update is None:
        return None
    return RolloutView(
        rollout_id=update.rollout_id,
        version=update.version,
        strategy=update.strategy,
        phase=update.phase,
        step=update.step,
        reason=update.reason,
    )


def _everyone(team: str | None) -> bool:
    return True


def overview(
    engine: MonitorEngine, firing: list[Alert], *, sees: Callable[[str | None], bool] = _everyone
) -> Overview:
    """The fleet as one caller may see it: only models whose team ``sees`` accepts, and only their
    alerts and traffic in the totals."""
    now = engine.clock()
    names = [name for name in model_names(engine) if sees(engine.team_of(name))]
    visible = set(names)
    firing = [alert for alert in firing if alert.model in visible]
    alerts_by_model: dict[str, int] = {}
    for alert in firing:
        alerts_by_model[alert.model] = alerts_by_model.get(alert.model, 0) + 1
    everyone = len(visible) == len(model_names(engine)) and sees(None)
    events = engine.counters.events if everyone else sum(engine.events_by_model.get(n, 0) for n in names)
    models = []
    for name in names:
        versions = sorted(v for m, v in engine.versions if m == name)
        info = engine.versions.get((name, versions[-1])) if versions else None
        route = engine.routes.get(name)
        state, last_at = _state(engine, name, now)
        models.append(
            ModelSummary(
                name=name,
                team=engine.team_of(name),
                task=info.registered.task if info else None,
                latest_version=versions[-1] if versions else None,
                arms=[ArmView(version=a.version, weight=a.weight, mode=a.mode) for a in route.routes.arms]
                if route
                else [],
                rollout=_rollout(engine, name),
                state=state,
                last_request_at=last_at,
                live=_merged_live(engine, _primary_keys(engine, name), now),
                drifting=[k for k in KINDS if any(engine.episodes.active(name, v, k) for v in versions)],
                alerts_firing=alerts_by_model.get(name, 0),
            )
        )
    return Overview(
        generated_at=datetime.now(UTC),
        window_s=engine.settings.window_s,
        models=models,
        alerts_firing=len(firing),
        events_ingested=events,
    )


def model_detail(
    engine: MonitorEngine, name: str, alerts: list[Alert], *, points: int = 180
) -> ModelDetail | None:
    if name not in model_names(engine):
        return None
    now = engine.clock()
    route = engine.routes.get(name)
    arms = {a.version: a for a in route.routes.arms} if route else {}
    numbers = sorted(
        {v for m, v in engine.versions if m == name}
        | set(arms)
        | {k.version for k in engine.windows.series() if k.model == name}
    )
    versions = []
    for number in numbers:
        info = engine.versions.get((name, number))
        registered = info.registered if info else None
        arm = arms.get(number)
        versions.append(
            VersionView(
                version=number,
                origin=registered.origin if registered else "unknown",
                parent_version=registered.parent_version if registered else None,
                dataset=f"{registered.dataset_version.dataset}@{registered.dataset_version.version}"
                if registered and registered.dataset_version
                else None,
                registered_metrics=registered.metrics if registered else {},
                weight=arm.weight if arm else None,
                mode=arm.mode if arm else None,
                live=_merged_live(
                    engine,
                    [SeriesKey(name, number, "primary")]
                    if SeriesKey(name, number, "primary") in engine.windows
                    else [],
                    now,
                ),
                performance=engine.latest_performance.get((name, number), {}),
                trigger_event_id=registered.trigger_event_id if registered else None,
            )
        )
    series = [
        SeriesView(
            version=key.version,
            arm=key.arm,
            points=[
                SeriesPoint(
                    t=b.start,
                    requests=b.requests,
                    rps=round(b.rps, 3),
                    error_rate=round(b.error_rate, 4),
                    latency_p50_ms=b.quantile(0.5),
                    latency_p95_ms=b.quantile(0.95),
                    latency_p99_ms=b.quantile(0.99),
                )
                for b in engine.windows.points(key, limit=points)
            ],
        )
        for key in sorted(k for k in engine.windows.series() if k.model == name)
    ]
    drift = [
        DriftView(
            version=version,
            kind=kind,
            active=engine.episodes.active(name, version, kind),
            drifted=latest.drifted,
            window_end=latest.window_end,
            sample_size=latest.rows,
            scores=latest.scores,
        )
        for (model, version, kind), latest in sorted(engine.latest_drift.items())
        if model == name
    ]
    rollout = engine.rollouts.get(name)
    state, _ = _state(engine, name, now)
    latest_info = engine.versions.get((name, numbers[-1])) if numbers else None
    return ModelDetail(
        name=name,
        team=engine.team_of(name),
        task=latest_info.registered.task if latest_info else None,
        state=state,
        versions=versions,
        rollout=_rollout(engine, name),
        analysis=list(rollout.last_analysis.values()) if rollout else [],
        series=series,
        drift=drift,
        alerts=alerts,
        retraining=list(engine.retrains.get(name, [])),
        bucket_s=engine.settings.bucket_s,
    )
