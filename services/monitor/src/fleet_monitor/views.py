"""Read models built from the engine's memory and the store: what the API and dashboard show."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

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
from fleet_monitor.engine import ACTIVE_PHASES, MonitorEngine
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


def _state_of(engine: MonitorEngine, model: str, last: float | None, now: float) -> str:
    route = engine.routes.get(model)
    in_traffic = route is not None and any(a.weight > 0 or a.mode == "shadow" for a in route.routes.arms)
    if not in_traffic and last is None:
        return "not deployed"
    if last is None or now - last > engine.settings.idle_after_s:
        return "idle"
    return "serving"


def _state(engine: MonitorEngine, model: str, now: float) -> tuple[str, datetime | None]:
    seen = [engine.windows.last_seen(k) for k in engine.windows.series() if k.model == model]
    last = max((s for s in seen if s), default=None)
    return _state_of(engine, model, last, now), datetime.fromtimestamp(last, UTC) if last else None


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


OverviewSort = Literal["name", "rps", "error_rate", "latency_p95", "drift", "alerts"]
OVERVIEW_SORTS: tuple[str, ...] = get_args(OverviewSort)
OverviewState = Literal["serving", "idle", "not deployed"]


@dataclass(frozen=True, slots=True)
class OverviewQuery:
    """One page of the fleet overview: filters, a sort and a slice. Filters left at None do not
    filter; ``q`` matches names containing it (case-insensitive), ``model`` one exact name."""

    q: str | None = None
    model: str | None = None
    team: str | None = None
    state: OverviewState | None = None
    alerting: bool | None = None
    drifting: bool | None = None
    rollout: bool | None = None
    """True: only models with a rollout in progress (pending, progressing, paused); False: none."""
    sort: OverviewSort = "name"
    order: Literal["asc", "desc"] | None = None
    """None: ascending for ``name``, descending (busiest, worst first) for the numbers."""
    limit: int = 100
    offset: int = 0

    @property
    def descending(self) -> bool:
        return self.order == "desc" if self.order is not None else self.sort != "name"


@dataclass(slots=True)
class _ModelIndex:
    """The engine's memory grouped by model once, so building 1,000 rows stays linear."""

    series: dict[str, list[SeriesKey]] = field(default_factory=dict)
    versions: dict[str, list[int]] = field(default_factory=dict)
    psi: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, engine: MonitorEngine) -> _ModelIndex:
        index = cls()
        for key in engine.windows.series():
            index.series.setdefault(key.model, []).append(key)
        for model, version in engine.versions:
            index.versions.setdefault(model, []).append(version)
        for numbers in index.versions.values():
            numbers.sort()
        for (model, _, kind), latest in engine.latest_drift.items():
            if kind == "concept":
                continue
            worst = max((s.statistic for s in latest.scores if s.test == "psi"), default=None)
            if worst is not None and worst > index.psi.get(model, -1.0):
                index.psi[model] = worst
        return index

    def names(self, engine: MonitorEngine) -> list[str]:
        return sorted(set(self.versions) | set(engine.routes) | set(self.series))


def _summary(engine: MonitorEngine, index: _ModelIndex, name: str, alerts: int, now: float) -> ModelSummary:
    versions = index.versions.get(name, [])
    keys = index.series.get(name, [])
    info = engine.versions.get((name, versions[-1])) if versions else None
    route = engine.routes.get(name)
    last = max((s for s in (engine.windows.last_seen(k) for k in keys) if s), default=None)
    return ModelSummary(
        name=name,
        team=engine.team_of(name),
        task=info.registered.task if info else None,
        latest_version=versions[-1] if versions else None,
        arms=[ArmView(version=a.version, weight=a.weight, mode=a.mode) for a in route.routes.arms]
        if route
        else [],
        rollout=_rollout(engine, name),
        state=_state_of(engine, name, last, now),
        last_request_at=datetime.fromtimestamp(last, UTC) if last else None,
        live=_merged_live(engine, [k for k in keys if k.arm == "primary"], now),
        drifting=[k for k in KINDS if any(engine.episodes.active(name, v, k) for v in versions)],
        drift_score=round(index.psi[name], 4) if name in index.psi else None,
        alerts_firing=alerts,
    )


def _sort_value(row: ModelSummary, sort: str) -> float | tuple[float, float] | None:
    if sort == "rps":
        return row.live.rps
    if sort == "error_rate":
        return row.live.error_rate
    if sort == "latency_p95":
        return row.live.latency_p95_ms
    if sort == "alerts":
        return row.alerts_firing
    if sort == "drift":
        # Open episodes first, then the largest PSI; a model never scored has no drift value.
        if not row.drifting and row.drift_score is None:
            return None
        return (len(row.drifting), row.drift_score if row.drift_score is not None else -1.0)
    raise ValueError(f"unknown sort {sort!r}")


def _matches(row: ModelSummary, query: OverviewQuery) -> bool:
    if query.model is not None and row.name != query.model:
        return False
    if query.q and query.q.casefold() not in row.name.casefold():
        return False
    if query.team is not None and row.team != query.team:
        return False
    if query.state is not None and row.state != query.state:
        return False
    if query.alerting is not None and (row.alerts_firing > 0) != query.alerting:
        return False
    if query.drifting is not None and bool(row.drifting) != query.drifting:
        return False
    in_progress = row.rollout is not None and row.rollout.phase in ACTIVE_PHASES
    return query.rollout is None or in_progress == query.rollout


def ordered(rows: list[ModelSummary], query: OverviewQuery) -> list[ModelSummary]:
    """``rows`` in the query's order; ties by name, rows without a value (no latency yet) last."""
    by_name = sorted(rows, key=lambda r: r.name, reverse=query.sort == "name" and query.descending)
    if query.sort == "name":
        return by_name
    valued = [(v, r) for r in by_name if (v := _sort_value(r, query.sort)) is not None]
    missing = [r for r in by_name if _sort_value(r, query.sort) is None]
    valued.sort(key=lambda pair: pair[0], reverse=query.descending)  # stable: names stay in order
    return [r for _, r in valued] + missing


def overview(
    engine: MonitorEngine,
    firing: Mapping[str, int],
    *,
    sees: Callable[[str | None], bool] = _everyone,
    query: OverviewQuery | None = None,
) -> Overview:
    """One page of the fleet as one caller may see it: only models whose team ``sees`` accepts,
    and only their alerts and traffic in the totals. ``firing`` counts firing alerts per model.

    Every row is built from the engine's memory in one pass (no database query per model), then
    filtered, sorted and sliced: about 1,000 models cost milliseconds, not a query each."""
    query = query or OverviewQuery()
    now = engine.clock()
    index = _ModelIndex.of(engine)
    every = index.names(engine)
    names = [name for name in every if sees(engine.team_of(name))]
    everyone = len(names) == len(every) and sees(None)
    events = engine.counters.events if everyone else sum(engine.events_by_model.get(n, 0) for n in names)
    teams = sorted({t for n in names if (t := engine.team_of(n)) is not None})
    # The cheap filters (name, team) come before the rows are built: a search costs its matches.
    if query.model is not None:
        names = [n for n in names if n == query.model]
    if query.q:
        needle = query.q.casefold()
        names = [n for n in names if needle in n.casefold()]
    if query.team is not None:
        names = [n for n in names if engine.team_of(n) == query.team]
    rows = [_summary(engine, index, name, firing.get(name, 0), now) for name in names]
    matching = ordered([r for r in rows if _matches(r, query)], query)
    visible_total = len([n for n in every if sees(engine.team_of(n))])
    return Overview(
        generated_at=datetime.now(UTC),
        window_s=engine.settings.window_s,
        models=matching[query.offset : query.offset + query.limit],
        total=len(matching),
        total_models=visible_total,
        limit=query.limit,
        offset=query.offset,
        sort=query.sort,
        order="desc" if query.descending else "asc",
        teams=teams,
        alerts_firing=sum(firing.get(n, 0) for n in every if sees(engine.team_of(n))),
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
                gate=checked.state if (checked := engine.deliveries.get((name, number))) else None,
                gate_reason=checked.reason if checked else None,
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
