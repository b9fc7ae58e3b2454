"""The deployer's behaviour: deploy, route, roll back, retire and reconcile.

A rollout is recorded before anything touches Ray and finished in a second transaction, so a crash
in between leaves a ``progressing`` rollout that ``reconcile`` resumes. Every route change is
written with the ``rollout.updated`` event that carries the whole new table, in one transaction.
Plain Python: no FastAPI, Kafka or Ray import; the serving engine sits behind ``ServingDriver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.auth import Principal, Role
from fleet_core.errors import Conflict, FleetError, InvalidInput, NotFound, Unavailable
from fleet_core.events import (
    AnomalyDetected,
    BatchSettings,
    ModelRegistered,
    RolloutAnalysis,
    RolloutPhase,
    RolloutRequested,
    RolloutUpdated,
    RouteTable,
    Strategy,
    Topic,
    VersionChecked,
)
from fleet_core.log import get_logger
from fleet_core.schemas import ResourceQuota
from fleet_core.serving import (
    POOL_APP,
    ModelRoute,
    ModelSpec,
    PoolSizing,
    RoutesSnapshot,
    ServedVersion,
    pool_refusal,
)
from fleet_deployer.activity import ActivityTracker
from fleet_deployer.entities import (
    Deployment,
    DeploymentFilter,
    DeploymentSort,
    DeploymentView,
    KnownVersion,
    Rollout,
    RolloutAction,
    RolloutFilter,
    RolloutSort,
)
from fleet_deployer.placement import effective_quota, placement_for, pool_config
from fleet_deployer.pool import PoolView, pool_view
from fleet_deployer.pool_apply import PoolApplier, PoolMetrics
from fleet_deployer.progressive import (
    PROGRESSIVE,
    Decision,
    Progress,
    Verdict,
    ab_table,
    canary_table,
    decide,
    new_progress,
    shadow_table,
)
from fleet_deployer.routing import (
    ArmRequest,
    RouteCause,
    RouteRevision,
    direct_table,
    empty_table,
    explicit_table,
    next_table,
    previous_stable,
    weight_of,
)
from fleet_deployer.serving_control import AppView, ServingDriver
from fleet_deployer.store import DeployerStore

log = get_logger(__name__)

UNFINISHED: tuple[RolloutPhase, ...] = ("pending", "progressing")
REGISTRY_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Waits between lookups when the registry cannot be reached while confirming an event."""
ROLLBACK_ANOMALIES = frozenset({"latency", "error_rate"})
RolloutCommand = Literal["pause", "resume", "promote", "abort"]
COMMAND_PAST = {"pause": "paused", "resume": "resumed", "promote": "promoted", "abort": "aborted"}
ACTION_CAUSE: dict[RolloutAction, RouteCause] = {
    "direct": "direct",
    "rollback": "rollback",
    "candidate": "candidate",
    "explicit": "explicit",
    "canary": "progressive",
    "ab": "progressive",
    "shadow": "progressive",
    "blue_green": "direct",
}


CONFIRM_CONCURRENCY = 16
"""Registry look-ups in flight at once while a batch of registrations is confirmed."""
EXECUTE_CONCURRENCY = 16
"""Models whose recorded rollouts are deployed at once (a batch, a resume): one pool round covers
them all either way; more would only queue on the database."""


class DeployFailed(FleetError):
    """The serving engine refused to run a version."""

    status, kind, title = 502, "deploy-failed", "Deploy failed"


class EventRejected(FleetError):
    """An event the deployer will not act on (its claims contradict the registry); dead-lettered."""

    status, kind, title = 409, "event-rejected", "Event rejected"


class VersionSource(Protocol):
    """Where versions the deployer never heard of are looked up (the registry)."""

    async def version(self, model: str, version: int) -> KnownVersion: ...

    async def latest_version(self, model: str) -> int: ...


@dataclass(frozen=True)
class ServingPolicy:
    """How versions are placed on the serving engine (from the settings)."""

    sizing: PoolSizing = field(default_factory=PoolSizing)
    idle_unload_s: float = 300.0
    env: dict[str, str] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _describe_arms(table: RouteTable) -> str:
    parts = []
    for arm in table.arms:
        if arm.mode == "shadow":
            parts.append(f"v{arm.version} shadow")
        else:
            parts.append(f"v{arm.version} {arm.weight:g}%" + (" sticky" if arm.sticky else ""))
    return ", ".join(parts) or "no arms"


class DeploymentController:
    """Deployments, route tables and rollouts of every model."""

    def __init__(
        self,
        store: DeployerStore,
        serving: ServingDriver,
        *,
        policy: ServingPolicy | None = None,
        registry: VersionSource | None = None,
        activity: ActivityTracker | None = None,
        pool_metrics: PoolMetrics | None = None,
    ) -> None:
        self.store = store
        self.serving = serving
        self.policy = policy or ServingPolicy()
        self.registry = registry
        self.activity = activity or ActivityTracker()
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_flight: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.pool = PoolApplier(self._apply_pool_now, metrics=pool_metrics)

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    # ------------------------------------------------------------------ lookups

    async def team_of(self, model: str) -> str:
        async with self.store.transaction() as s:
            team = await self.store.team_of(s, model)
        if team is None:
            raise NotFound(f"model '{model}' is not known to the deployer", field="model")
        return team

    async def resolve(self, model: str, version: int | None = None) -> KnownVersion:
        """A known version (the latest when ``version`` is None), asking the registry if needed."""
        async with self.store.transaction() as s:
            found = (
                await self.store.latest_known(s, model)
                if version is None
                else await self.store.known(s, model, version)
            )
        if found is not None:
            return found
        if self.registry is None:
            what = f"model '{model}'" if version is None else f"model '{model}' version {version}"
            raise NotFound(
                f"{what} is not known to the deployer", field="model" if version is None else "version"
            )
        number = version if version is not None else await self.registry.latest_version(model)
        fetched = await self.registry.version(model, number)
        async with self.store.transaction() as s:
            await self.store.add_known(s, fetched)
        log.info("version looked up in the registry", model=model, version=number)
        return fetched

    async def rollout(self, rollout_id: str) -> Rollout:
        async with self.store.transaction() as s:
            found = await self.store.rollout(s, rollout_id)
        if found is None:
            raise NotFound(f"rollout '{rollout_id}' does not exist", field="rollout_id")
        return found

    async def rollouts(
        self, where: RolloutFilter, *, sort: RolloutSort = "-created", limit: int = 100, offset: int = 0
    ) -> tuple[list[Rollout], int]:
        async with self.store.transaction() as s:
            return await self.store.rollouts(s, where, sort=sort, limit=limit, offset=offset)

    # ------------------------------------------------------------------ events

    async def confirm_registered(self, event_id: str, data: ModelRegistered) -> KnownVersion:
        """The registry's record of the version an event announces, or ``EventRejected`` naming what
        the event got wrong. The event is a notification: team, artifact, sha256, deploy policy and
        quota all come from the registry, so a forged or stale event deploys nothing."""
        what = f"model.registered {event_id} for {data.model} v{data.version}"
        if self.registry is None:
            raise EventRejected(f"{what}: no registry is configured to confirm it; not acted on")
        try:
            truth = await self._registry_version(data.model, data.version)
        except NotFound as exc:
            raise EventRejected(f"{what}: the registry has no such version; not deployed") from exc
        claims = {
            "team": (data.team, truth.team),
            "artifact_uri": (data.artifact_uri, truth.spec.artifact_uri),
            "sha256": (data.sha256, truth.spec.sha256),
            "deploy_policy": (data.deploy_policy, truth.deploy_policy),
            "quota": (data.quota, truth.quota),
        }
        wrong = [
            f"{name} (event {said!r}, registry {real!r})"
            for name, (said, real) in claims.items()
            if said != real
        ]
        if wrong:
            log.warning(
                "model.registered contradicts the registry; not acted on",
                event_id=event_id,
                model=data.model,
                version=data.version,
                fields=[name for name, (said, real) in claims.items() if said != real],
            )
            raise EventRejected(f"{what} contradicts the registry on " + "; ".join(wrong) + "; not deployed")
        return truth

    async def _registry_version(self, model: str, version: int) -> KnownVersion:
        """The registry's record, waiting out a short outage (a restart) before the consumer's own
        few quick retries would dead-letter a registration the registry is about to confirm."""
        assert self.registry is not None
        for delay in (*REGISTRY_RETRY_S, None):
            try:
                return await self.registry.version(model, version)
            except Unavailable as exc:
                if delay is None:
                    raise
                log.warning("registry unavailable; retrying", model=model, version=version, error=str(exc))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def on_model_registered(self, event_id: str, data: ModelRegistered) -> Rollout | None:
        """Confirm the version with the registry, remember it, and deploy it when its policy (the
        registry's) says so. Idempotent on ``event_id``."""
        known = await self.confirm_registered(event_id, data)
        async with self._lock(data.model):
            async with self.store.transaction() as s:
                rollout_id = await self._record_registered(s, event_id, data, known)
            return None if rollout_id is None else await self._execute(rollout_id)

    async def on_models_registered(
        self, events: Sequence[tuple[str, ModelRegistered]], *, wait: bool = True
    ) -> list[Rollout]:
        """Many ``model.registered`` events at once (a consumer batch, a bulk onboarding):
        redeliveries skipped by their ids, the rest confirmed with the registry concurrently and
        recorded in **one** transaction, then deployed with one pool reconfiguration for all the
        pool-placed versions rather than one each.

        Each model's lock is taken before its events are recorded and held until its rollouts are
        done, so neither ``reconcile`` nor a later event for the same model overtakes them. With
        ``wait=False`` (the consumer) this returns once the batch is recorded and the deploying
        goes on in the background: the consumer fetches and records the next batch while this
        one's pool round runs. A recorded rollout is durable; one that a crash interrupts is
        resumed by ``reconcile``. The rollouts are returned only when waited for.

        Raises the first event's error after doing (or starting) every other event's work, so the
        consumer's per-event retry (each event idempotent on its id) redoes only what failed."""
        async with self.store.transaction() as s:
            seen = await self.store.claimed(s, [event_id for event_id, _ in events])
        fresh = [(event_id, data) for event_id, data in events if event_id not in seen]
        limit = asyncio.Semaphore(CONFIRM_CONCURRENCY)

        async def confirm(event_id: str, data: ModelRegistered) -> KnownVersion:
            async with limit:
                return await self.confirm_registered(event_id, data)

        confirmed = await asyncio.gather(*(confirm(e, d) for e, d in fresh), return_exceptions=True)
        errors: list[BaseException] = []
        ready: list[tuple[str, ModelRegistered, KnownVersion]] = []
        for (event_id, data), known in zip(fresh, confirmed, strict=True):
            if isinstance(known, BaseException):
                errors.append(known)
            else:
                ready.append((event_id, data, known))
        models = sorted({data.model for _, data, _ in ready})
        await self._hold(models)
        try:
            accepted = await self._record_many(ready, errors)
        except BaseException:
            for model in models:
                self._lock(model).release()
            raise
        for model in models:
            if model not in accepted:
                self._lock(model).release()
        work = asyncio.create_task(self._execute_held(accepted, committed_at=time.monotonic()))
        self._background.add(work)
        work.add_done_callback(self._background_done)
        if not wait:
            if errors:
                raise errors[0]
            return []
        done, failures = await asyncio.shield(work)
        errors += failures
        if errors:
            raise errors[0]
        return done

    async def _hold(self, models: Sequence[str]) -> None:
        """Take every model's lock (sorted, so two callers never wait on each other)."""
        taken: list[str] = []
        try:
            for model in models:
                await self._lock(model).acquire()
                taken.append(model)
        except BaseException:
            for model in taken:
                self._lock(model).release()
            raise

    async def _record_many(
        self, ready: Sequence[tuple[str, ModelRegistered, KnownVersion]], errors: list[BaseException]
    ) -> dict[str, list[str]]:
        """Record confirmed registrations in one transaction; model -> its new rollouts, in event
        order. When one of them cannot be recorded the transaction is rolled back and they are
        recorded one per transaction, so only that one fails (into ``errors``)."""
        accepted: dict[str, list[str]] = {}
        try:
            async with self.store.transaction() as s:
                for event_id, data, known in ready:
                    rollout_id = await self._record_registered(s, event_id, data, known)
                    if rollout_id is not None:
                        accepted.setdefault(data.model, []).append(rollout_id)
            return accepted
        except Exception:
            accepted.clear()
        for event_id, data, known in ready:
            try:
                async with self.store.transaction() as s:
                    rollout_id = await self._record_registered(s, event_id, data, known)
            except Exception as exc:
                errors.append(exc)
                continue
            if rollout_id is not None:
                accepted.setdefault(data.model, []).append(rollout_id)
        return accepted

    async def _execute_held(
        self, accepted: dict[str, list[str]], *, committed_at: float
    ) -> tuple[list[Rollout], list[BaseException]]:
        """Deploy recorded rollouts whose models' locks the caller holds, releasing each model's
        lock once its rollouts are done: models concurrently (one pool round covers them all,
        since they were committed before ``committed_at``), a model's own rollouts in order."""
        limit = asyncio.Semaphore(EXECUTE_CONCURRENCY)
        done: dict[str, Rollout] = {}
        failures: list[BaseException] = []
        self._in_flight.update(r for ids in accepted.values() for r in ids)

        async def deploy(model: str, rollout_ids: list[str]) -> None:
            try:
                async with limit:
                    for rollout_id in rollout_ids:
                        try:
                            done[rollout_id] = await self._execute(rollout_id, committed_at=committed_at)
                        except Exception as exc:
                            log.warning(
                                "deploying a recorded rollout failed; reconcile resumes it",
                                model=model,
                                rollout_id=rollout_id,
                                error=_error(exc),
                            )
                            failures.append(exc)
            finally:
                self._in_flight.difference_update(rollout_ids)
                self._lock(model).release()

        await asyncio.gather(*(deploy(model, ids) for model, ids in accepted.items()))
        order = [r for ids in accepted.values() for r in ids]
        return [done[r] for r in order if r in done], failures

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background deploy failed", error=_error(task.exception()))  # type: ignore[arg-type]

    async def idle(self) -> None:
        """Wait for the deploys started in the background (``on_models_registered(wait=False)``)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def close(self) -> None:
        """Stop background deploys (as a crash would: ``reconcile`` resumes them at the next start)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _record_registered(
        self, s: AsyncSession, event_id: str, data: ModelRegistered, known: KnownVersion
    ) -> str | None:
        """Record a confirmed version (and the rollout its deploy policy asks for) in the caller's
        transaction, claiming the event; the rollout's id, or None when there is nothing to deploy
        (a redelivery, policy ``none``, or a canary skipped because another rollout runs)."""
        registered_by = known.registered_by or data.registered_by
        if not await self.store.claim(s, event_id=event_id, topic=Topic.MODEL_REGISTERED):
            return None
        await self.store.add_known(s, known, event_id=event_id)
        if known.deploy_policy == "none":
            return None
        if known.deploy_policy == "direct":
            rollout = await self._begin(
                s,
                known,
                None,
                "direct",
                "direct",
                registered_by,
                f"deploy policy 'direct' on registration of v{data.version}",
                event_id,
            )
            return rollout.id
        if known.deploy_policy == "gated":
            return None  # the delivery gate runs first: version.checked "ready" starts the canary
        return await self._begin_canary(
            s, known, registered_by, f"deploy policy 'canary' on registration of v{data.version}", event_id
        )

    async def _begin_canary(
        self, s: AsyncSession, known: KnownVersion, requested_by: str, why: str, event_id: str
    ) -> str | None:
        """A canary of ``known`` against what serves (all traffic when nothing does: no baseline),
        in the caller's transaction; None when another rollout of the model is under way."""
        model, version = known.spec.model, known.spec.version
        current = await self.store.route(s, model)
        if current is None or not any(a.mode == "primary" and a.weight > 0 for a in current.arms):
            rollout = await self._begin(
                s,
                known,
                None,
                "direct",
                "direct",
                requested_by,
                f"{why}, but the model serves nothing yet, so there is no baseline: "
                f"v{version} takes all traffic",
                event_id,
            )
            return rollout.id
        active = await self.store.active_rollout(s, model)
        if active is not None:
            log.warning(
                "canary skipped: another rollout is under way",
                model=model,
                version=version,
                rollout_id=active.id,
                why=why,
            )
            return None
        request = RolloutRequested(
            model=model, version=version, strategy="canary", requested_by=requested_by, reason=why
        )
        rollout = await self._begin(
            s,
            known,
            None,
            "canary",
            "canary",
            requested_by,
            why,
            event_id,
            request=request.model_dump(mode="json"),
        )
        return rollout.id

    async def on_version_checked(self, event_id: str, data: VersionChecked) -> Rollout | None:
        """A gated version's delivery state changed. Only ``ready`` is acted on, and only once the
        registry says so too (the event is a notification): the version is canaried against what
        serves. Idempotent on ``event_id``; a version that already has a rollout gets no second."""
        if data.state != "ready":
            log.info("gated version not ready", model=data.model, version=data.version, state=data.state)
            return None
        if self.registry is None:
            raise EventRejected(f"version.checked {event_id}: no registry is configured to confirm it")
        truth = await self.registry.delivery(data.model, data.version)
        if truth.get("state") != "ready" or truth.get("deploy_policy") != "gated":
            log.warning(
                "version.checked says ready, the registry does not; not acted on",
                event_id=event_id,
                model=data.model,
                version=data.version,
                registry_state=truth.get("state"),
            )
            return None
        known = await self.resolve(data.model, data.version)
        async with self._lock(data.model):
            async with self.store.transaction() as s:
                if not await self.store.claim(s, event_id=event_id, topic=Topic.VERSION_CHECKED):
                    return None
                if await self.store.has_rollout_of(s, data.model, data.version):
                    return None
                rollout_id = await self._begin_canary(
                    s,
                    known,
                    "delivery gate",
                    f"v{data.version} passed its delivery gate ({truth.get('reason')})",
                    event_id,
                )
            return None if rollout_id is None else await self._execute(rollout_id)

    async def handled(self, event_id: str) -> bool:
        """Whether the rollout an event asked for was already started (a redelivery)."""
        async with self.store.transaction() as s:
            return await self.store.rollout_by_event(s, event_id) is not None

    async def on_rollout_event(
        self, event_id: str, request: RolloutRequested, principal: Principal
    ) -> Rollout:
        """``rollout.requested`` from the broker, authorised by the token it carries exactly as
        ``POST /v1/rollouts`` is: the deployer role on the model's team (the registry's team)."""
        known = await self.resolve(request.model, request.version)
        principal.require(Role.DEPLOYER, known.team)
        # Who asked is the token's subject; a service acting for someone keeps the name it was given.
        who = principal.subject
        if request.requested_by != who:
            who = f"{request.requested_by} via {principal.subject}"
        return await self.on_rollout_requested(event_id, request.model_copy(update={"requested_by": who}))

    async def on_rollout_requested(self, event_id: str | None, request: RolloutRequested) -> Rollout:
        """Start a rollout: ``direct`` deploys and routes at once; ``canary``, ``ab``, ``shadow`` and
        ``blue_green`` deploy the candidate and then progress by the monitor's verdicts."""
        known = await self.resolve(request.model, request.version)
        async with self._lock(request.model):
            async with self.store.transaction() as s:
                if event_id is not None and not await self.store.claim(
                    s, event_id=event_id, topic=Topic.ROLLOUT_REQUESTED
                ):
                    existing = await self.store.rollout_by_event(s, event_id)
                    if existing is None:
                        raise Conflict(f"event {event_id} was handled, but its rollout is gone")
                    return existing
                active = await self.store.active_rollout(s, request.model)
                if active is not None:
                    raise Conflict(
                        f"a {active.strategy} rollout of {request.model} v{active.version} is under way "
                        f"({active.id}); promote or abort it first",
                        field="model",
                    )
                if request.strategy == "ab" and request.arms:
                    try:
                        ab_table(empty_table(request.model), 0, 0, request.arms, {})
                    except ValueError as exc:
                        raise InvalidInput(str(exc), field="arms") from exc
                rollout = await self._begin(
                    s,
                    known,
                    request.quota,
                    request.strategy,
                    request.strategy,
                    request.requested_by,
                    request.reason or f"{request.strategy} rollout of v{request.version}",
                    event_id,
                    request=request.model_dump(mode="json"),
                )
            return await self._execute(rollout.id)

    async def on_inference_logged(self, model: str, version: int, at: datetime) -> None:
        self.activity.touch(model, version, at)

    # ------------------------------------------------------------------ commands

    async def deploy(
        self, model: str, version: int | None, quota: ResourceQuota | None, requested_by: str
    ) -> Rollout:
        """Deploy a version (default: the latest known) and route all traffic to it."""
        known = await self.resolve(model, version)
        return await self.on_rollout_requested(
            None,
            RolloutRequested(
                model=model,
                version=known.version,
                strategy="direct",
                quota=quota,
                requested_by=requested_by,
                reason=f"direct deploy of v{known.version} requested by {requested_by}",
            ),
        )

    async def rollback(self, model: str, requested_by: str, reason: str | None = None) -> Rollout:
        """Route all traffic back to the previous stable version; next gateway request sees it."""
        async with self._lock(model):
            async with self.store.transaction() as s:
                history = await self.store.route_history(s, model)
                if not history and await self.store.team_of(s, model) is None:
                    raise NotFound(f"model '{model}' is not known to the deployer", field="model")
                target = previous_stable([RouteRevision(h.table, h.cause) for h in history])
                known = await self.store.known(s, model, target)
                if known is None:  # pragma: no cover - a routed version is always known
                    raise NotFound(f"model '{model}' version {target} is not known", field="version")
                existing = await self.store.deployment(s, model, target)
                current = history[-1].table
                rollout = await self._begin(
                    s,
                    known,
                    existing.quota if existing is not None else None,
                    "direct",
                    "rollback",
                    requested_by,
                    f"rollback from {_describe_arms(current)} to v{target} requested by {requested_by}"
                    + (f": {reason}" if reason else ""),
                    None,
                )
                await self._end_active(
                    s,
                    model,
                    "rolled_back",
                    f"ended by rollback {rollout.id} to v{target} requested by {requested_by}",
                    current,
                )
            return await self._execute(rollout.id)

    async def set_routes(
        self, model: str, arms: Sequence[ArmRequest], requested_by: str, expected_revision: int | None = None
    ) -> ModelRoute:
        """Install an operator's explicit table (weighted, sticky, shadow arms).

        A known version in the table that is not deployed yet is deployed first (placed by its
        registered quota); if that fails, the table is left as it was.
        """
        # A version registered a moment ago may not have reached us as an event yet: look it up
        # in the registry like a deploy request would. One still unknown (or a registry that
        # cannot be reached) is reported by the table check below, naming the arm.
        for arm in arms:
            with contextlib.suppress(NotFound, Unavailable):
                await self.resolve(model, arm.version)
        async with self._lock(model):
            async with self.store.transaction() as s:
                team, current = await self._current_table(s, model, expected_revision)
                known = await self.store.known_numbers(s, model)
                existing = {d.version: d for d in await self.store.deployments(s, model=model)}
                hosts: dict[int, str] = {}
                missing: list[KnownVersion] = []
                for arm in arms:
                    dep = existing.get(arm.version)
                    if dep is not None and dep.state != "failed":
                        hosts[arm.version] = dep.placement.app
                    elif arm.version in known:
                        found = await self.store.known(s, model, arm.version)
                        assert found is not None
                        quota = self._quota_of(dep, found)
                        hosts[arm.version] = placement_for(model, arm.version, quota).app
                        missing.append(found)
                table = explicit_table(current, arms, known=known, deployed=hosts)
                placed = []
                for found in missing:
                    dep = existing.get(found.version)
                    quota = self._quota_of(dep, found)
                    placed.append(
                        await self.store.put_deployment(
                            s,
                            model=model,
                            version=found.version,
                            team=team,
                            placement=placement_for(model, found.version, quota),
                            quota=quota,
                            state="deploying" if self.serving.connected else "pending",
                        )
                    )
            failures = []
            for dep, found in zip(placed, missing, strict=True):
                state, error = await self._place(dep, found.spec)
                async with self.store.transaction() as s:
                    await self.store.set_deployment_state(s, model, dep.version, state, error)
                if error is not None:
                    failures.append(f"v{dep.version}: {error}")
            if failures:
                raise DeployFailed(
                    "the route table was not changed: deploying " + "; ".join(failures), field="arms"
                )
            async with self.store.transaction() as s:
                lead = max((a for a in table.arms if a.mode == "primary"), key=lambda a: a.weight)
                rollout_id = str(uuid.uuid4())
                rollout = await self.store.add_rollout(
                    s,
                    rollout_id=rollout_id,
                    model=model,
                    team=team,
                    version=lead.version,
                    strategy="direct",
                    phase="promoted",
                    requested_by=requested_by,
                    reason=f"explicit route table set by {requested_by}: {_describe_arms(table)}",
                    request={"action": "explicit", "arms": [a.model_dump(mode="json") for a in arms]},
                )
                await self.store.save_route(
                    s, table, team=team, cause="explicit", rollout_id=rollout_id, by=requested_by
                )
                await self._end_active(
                    s,
                    model,
                    "aborted",
                    f"aborted: an explicit route table ({_describe_arms(table)}) was set by {requested_by} "
                    f"(rollout {rollout_id})",
                    table,
                )
                await self._announce(s, rollout, table)
            return await self.model_route(model)

    async def _current_table(
        self, s: AsyncSession, model: str, expected_revision: int | None
    ) -> tuple[str, RouteTable]:
        """The model's team and current route table, for a change that expects ``expected_revision``
        (None: any); NotFound for a model the deployer does not know, Conflict for a moved table."""
        team = await self.store.team_of(s, model)
        if team is None:
            raise NotFound(f"model '{model}' is not known to the deployer", field="model")
        current = await self.store.route(s, model) or empty_table(model)
        if expected_revision is not None and expected_revision != current.revision:
            raise Conflict(
                f"the route table is at revision {current.revision}, not {expected_revision}",
                field="expected_revision",
            )
        return team, current

    @staticmethod
    def _quota_of(dep: Deployment | None, known: KnownVersion) -> ResourceQuota | None:
        """The quota a version is (re)placed with: its deployment's, else its registered one."""
        return effective_quota(dep.quota if dep is not None else None, known.quota, known.spec.flavor)

    async def retire(self, model: str, version: int, requested_by: str) -> None:
        """Remove a deployment that carries no traffic from the serving engine."""
        async with self._lock(model):
            async with self.store.transaction() as s:
                dep = await self.store.deployment(s, model, version)
                if dep is None or dep.state == "retired":
                    raise NotFound(f"model '{model}' version {version} is not deployed", field="version")
                table = await self.store.route(s, model) or empty_table(model)
                arm = next((a for a in table.arms if a.version == version), None)
                if arm is not None:
                    share = "shadow copies" if arm.mode == "shadow" else f"{arm.weight:g}% of primary traffic"
                    raise Conflict(
                        f"version {version} carries traffic ({share}, route revision {table.revision}); "
                        "route it away first",
                        field="version",
                    )
                await self.store.set_deployment_state(s, model, version, "retired")
            log.info("deployment retired", model=model, version=version, by=requested_by)
            error = await self._unplace(dep)
            if error:
                async with self.store.transaction() as s:
                    await self.store.set_deployment_state(
                        s, model, version, "retired", f"retired, but removing it from Ray failed: {error}"
                    )

    async def set_batching(
        self,
        model: str,
        batching: BatchSettings | None,
        requested_by: str,
        expected_revision: int | None = None,
    ) -> ModelRoute:
        """Set (None: reset to the gateways' defaults) how gateways batch the model's requests.

        The settings ride on the route table: a new revision with the same arms, announced on
        ``rollout.updated`` with the model's latest rollout (its phase and step unchanged, so the
        monitor's analysis goes on), and carried over by every later table."""
        async with self._lock(model):
            async with self.store.transaction() as s:
                team, current = await self._current_table(s, model, expected_revision)
                table = next_table(current, list(current.arms)).model_copy(update={"batching": batching})
                latest, _ = await self.store.rollouts(s, RolloutFilter(model=model), limit=1)
                await self.store.save_route(
                    s,
                    table,
                    team=team,
                    cause="batching",
                    rollout_id=latest[0].id if latest else None,
                    by=requested_by,
                )
                if latest:
                    progress = latest[0].progress
                    kpi = Progress.model_validate(progress).kpi if progress is not None else None
                    await self._announce(s, latest[0], table, kpi=kpi)
            log.info(
                "batch settings changed",
                model=model,
                revision=table.revision,
                batching=batching.model_dump(exclude_none=True) if batching else None,
                by=requested_by,
            )
            return await self.model_route(model)

    async def undeploy(self, model: str, requested_by: str) -> ModelRoute:
        """Stop serving a model: its route table is emptied (a new revision, announced on
        ``rollout.updated``), a progressive rollout under way is aborted, and every deployment is
        retired and removed from the serving engine. A model already undeployed is left as it is.
        ``rollback`` routes it back to its last stable version."""
        async with self._lock(model):
            async with self.store.transaction() as s:
                team = await self.store.team_of(s, model)
                if team is None:
                    raise NotFound(f"model '{model}' is not known to the deployer", field="model")
                current = await self.store.route(s, model) or empty_table(model)
                live = await self.store.deployments(s, model=model)
                if current.arms or live:
                    primaries = [a for a in current.arms if a.mode == "primary"]
                    lead = (
                        max(primaries, key=lambda a: a.weight).version
                        if primaries
                        else max((a.version for a in current.arms), default=max(d.version for d in live))
                    )
                    reason = (
                        f"undeployed by {requested_by}: routes were {_describe_arms(current)}; "
                        f"retired {', '.join(f'v{d.version}' for d in live) or 'nothing'}"
                    )
                    rollout = await self.store.add_rollout(
                        s,
                        rollout_id=str(uuid.uuid4()),
                        model=model,
                        team=team,
                        version=lead,
                        strategy="direct",
                        phase="aborted",
                        requested_by=requested_by,
                        reason=reason,
                        request={"action": "undeploy"},
                    )
                    table = next_table(current, [])
                    await self.store.save_route(
                        s, table, team=team, cause="undeploy", rollout_id=rollout.id, by=requested_by
                    )
                    await self._end_active(
                        s,
                        model,
                        "aborted",
                        f"aborted: the model was undeployed (rollout {rollout.id})",
                        table,
                    )
                    await self._announce(s, rollout, table)
                    for dep in live:
                        await self.store.set_deployment_state(s, model, dep.version, "retired")
            if live:
                log.info("model undeployed", model=model, retired=[d.version for d in live], by=requested_by)
            # One pool round covers every pool version; dedicated applications go one by one.
            pooled = [d for d in live if d.placement.kind == "pool"]
            for dep in [d for d in live if d.placement.kind != "pool"] + pooled[:1]:
                error = await self._unplace(dep)
                if error:
                    async with self.store.transaction() as s:
                        for gone in pooled if dep in pooled else [dep]:
                            await self.store.set_deployment_state(
                                s,
                                model,
                                gone.version,
                                "retired",
                                f"retired, but removing it from Ray failed: {error}",
                            )
        return await self.model_route(model)

    # ------------------------------------------------------------------ rollout machinery

    async def _begin(
        self,
        s: AsyncSession,
        known: KnownVersion,
        requested_quota: ResourceQuota | None,
        strategy: Strategy,
        action: RolloutAction,
        requested_by: str,
        reason: str,
        event_id: str | None,
        *,
        request: dict[str, Any] | None = None,
    ) -> Rollout:
        """Record the rollout (progressing) and the deployment it needs, in the caller's transaction."""
        existing = await self.store.deployment(s, known.model, known.version)
        quota = effective_quota(requested_quota, known.quota, known.spec.flavor)
        placement = placement_for(known.model, known.version, quota)
        body = dict(request or {})
        body["action"] = action
        unchanged = (
            existing is not None
            and existing.state not in ("retired", "failed")
            and existing.placement == placement
            and existing.quota == quota
        )
        if existing is not None and existing.state != "retired" and existing.placement != placement:
            body["previous_placement"] = existing.placement.model_dump(mode="json")
        if not unchanged:
            await self.store.put_deployment(
                s,
                model=known.model,
                version=known.version,
                team=known.team,
                placement=placement,
                quota=quota,
                state="deploying" if self.serving.connected else "pending",
            )
        return await self.store.add_rollout(
            s,
            rollout_id=str(uuid.uuid4()),
            model=known.model,
            team=known.team,
            version=known.version,
            strategy=strategy,
            phase="progressing",
            requested_by=requested_by,
            reason=reason,
            quota=quota,
            request=body,
            event_id=event_id,
        )

    async def _end_active(
        self, s: AsyncSession, model: str, phase: RolloutPhase, reason: str, table: RouteTable
    ) -> Rollout | None:
        """A person changed the routes by hand: the progressive rollout under way (progressing or
        paused) ends here, so no later tick, verdict or command puts its candidate back."""
        active = await self.store.active_rollout(s, model)
        if active is None:
            return None
        done = await self.store.set_rollout_phase(s, active.id, phase, reason=reason)
        progress = Progress.model_validate(active.progress)
        await self._announce(s, done, table, kpi=progress.kpi)
        log.info("progressive rollout ended by hand", model=model, rollout_id=active.id, phase=phase)
        return done

    async def _announce(
        self, s: AsyncSession, rollout: Rollout, table: RouteTable, *, kpi: str | None = None
    ) -> None:
        await self.store.publish(
            s,
            Topic.ROLLOUT_UPDATED,
            RolloutUpdated(
                rollout_id=rollout.id,
                model=rollout.model,
                version=rollout.version,
                strategy=rollout.strategy,
                phase=rollout.phase,
                step=rollout.step,
                routes=table,
                reason=rollout.reason,
                kpi=kpi,
            ),
        )

    async def _execute(
        self, rollout_id: str, *, committed_at: float | None = None, resumed: bool = False
    ) -> Rollout:
        """Place the rollout's version on the serving engine, then route to it (or fail visibly).

        ``committed_at``: when the rollout's deployment was committed, if earlier than now; a pool
        round that started after it already covers this version (``PoolApplier``). ``resumed``:
        reconcile picked it up unstarted (logged, unless it finished meanwhile)."""
        self._in_flight.add(rollout_id)
        try:
            async with self.store.transaction() as s:
                rollout = await self.store.rollout(s, rollout_id)
                assert rollout is not None
                if rollout.phase not in UNFINISHED or rollout.progress is not None:
                    return rollout  # finished meanwhile (by whoever held the model's lock)
                if resumed:
                    log.info(
                        "resuming rollout",
                        rollout_id=rollout_id,
                        model=rollout.model,
                        version=rollout.version,
                    )
                request = await self.store.rollout_request(s, rollout_id)
                known = await self.store.known(s, rollout.model, rollout.version)
                dep = await self.store.deployment(s, rollout.model, rollout.version)
            assert known is not None and dep is not None
            state, error = await self._place(dep, known.spec, committed_at=committed_at)
            if error is None and "previous_placement" in request:
                await self._cleanup_previous(dep, request["previous_placement"])
            if error is None and rollout.action == "blue_green":
                error = await self._smoke_test(dep, known.spec)
            async with self.store.transaction() as s:
                await self.store.set_deployment_state(s, dep.model, dep.version, state, error)
                current = await self.store.route(s, rollout.model) or empty_table(rollout.model)
                if error is not None:
                    done = await self.store.set_rollout_phase(
                        s, rollout_id, "failed", reason=f"deploying v{rollout.version} failed: {error}"
                    )
                    await self._announce(s, done, current)
                    return done
                if rollout.action in PROGRESSIVE:
                    return await self._start_progressive(s, rollout, request, current, dep)
                table, phase, step = self._next_table(rollout.action, current, dep)
                await self.store.save_route(
                    s,
                    table,
                    team=rollout.team,
                    cause=ACTION_CAUSE[rollout.action],
                    rollout_id=rollout_id,
                    by=rollout.requested_by,
                )
                done = await self.store.set_rollout_phase(
                    s, rollout_id, phase, step=step, reason=rollout.reason
                )
                await self._announce(s, done, table)
            log.info(
                "rollout finished",
                model=rollout.model,
                version=rollout.version,
                phase=phase,
                revision=table.revision,
                deployment_state=state,
            )
            return done
        finally:
            self._in_flight.discard(rollout_id)

    @staticmethod
    def _next_table(
        action: RolloutAction, current: RouteTable, dep: Deployment
    ) -> tuple[RouteTable, RolloutPhase, int]:
        phase: RolloutPhase = "rolled_back" if action == "rollback" else "promoted"
        return direct_table(current, dep.version, dep.placement.app), phase, 100

    # ------------------------------------------------------------------ progressive delivery

    async def _apps(self, s: AsyncSession, model: str) -> dict[int, str]:
        """version -> serving application, for the model's live deployments."""
        return {
            d.version: d.placement.app
            for d in await self.store.deployments(s, model=model)
            if d.state not in ("retired", "failed")
        }

    @staticmethod
    def _baseline(current: RouteTable, candidate: int) -> int | None:
        """The version the candidate is compared with: the busiest other primary arm."""
        others = [a for a in current.arms if a.mode == "primary" and a.weight > 0 and a.version != candidate]
        return max(others, key=lambda a: a.weight).version if others else None

    async def _start_progressive(
        self, s: AsyncSession, rollout: Rollout, request: dict[str, Any], current: RouteTable, dep: Deployment
    ) -> Rollout:
        """The candidate runs: install the strategy's first table (in the caller's transaction)."""
        now = _now()
        baseline = self._baseline(current, rollout.version)
        apps = await self._apps(s, rollout.model)
        progress = new_progress(rollout.strategy, request, baseline, now)
        if baseline is None:
            table = direct_table(current, dep.version, dep.placement.app)
            phase: RolloutPhase = "promoted"
            step, cause = 100, "direct"
            reason = (
                f"{rollout.strategy}: the model serves nothing else, so v{rollout.version} takes all traffic"
            )
        else:
            phase, cause, reason = "progressing", "progressive", rollout.reason or ""
            if rollout.strategy == "canary":
                table = canary_table(current, baseline, rollout.version, progress.percent, apps)
                step = progress.percent
                reason = f"canary at {step} % against v{baseline}, each step held {progress.interval_s:g} s"
            elif rollout.strategy == "ab":
                table = ab_table(current, baseline, rollout.version, progress.arms, apps)
                step = 0
                reason = (
                    f"A/B against v{baseline} on {progress.kpi or 'the model default KPI'} until a winner"
                )
            elif rollout.strategy == "shadow":
                table = shadow_table(current, baseline, rollout.version, apps)
                step = 0
                reason = f"shadowing v{baseline}: copies of every request, answers discarded"
            else:  # blue_green: smoke-tested already; switch at once, keep blue for the window
                table = direct_table(current, dep.version, dep.placement.app)
                step, cause = 100, "direct"
                reason = (
                    f"switched from v{baseline} after a smoke test; v{baseline} kept for the rollback window"
                )
        await self.store.set_rollout_progress(s, rollout.id, progress.model_dump(mode="json"))
        await self.store.save_route(
            s, table, team=rollout.team, cause=cause, rollout_id=rollout.id, by=rollout.requested_by
        )
        done = await self.store.set_rollout_phase(s, rollout.id, phase, step=step, reason=reason)
        await self._announce(s, done, table, kpi=progress.kpi)
        log.info(
            "progressive rollout started",
            model=rollout.model,
            version=rollout.version,
            strategy=rollout.strategy,
        )
        return done

    async def _smoke_test(self, dep: Deployment, spec: ModelSpec) -> str | None:
        """Warm the version and prove it answers its example input; the error, if any."""
        if not self.serving.connected:
            return None
        rows = spec.example_input
        if not rows:
            return "blue-green needs the version's example input to smoke-test it, and it has none"
        try:
            await self.serving.smoke_test(spec, dep.placement, rows)
        except Exception as exc:
            return f"smoke test on the example input failed: {_error(exc)}"
        return None

    async def on_rollout_analysis(self, analysis: RolloutAnalysis) -> Rollout | None:
        """Keep the monitor's verdict for the current step, then act on it."""
        async with self._lock(analysis.model):
            async with self.store.transaction() as s:
                rollout = await self.store.rollout(s, analysis.rollout_id)
                if (
                    rollout is None
                    or rollout.progress is None
                    or rollout.phase not in ("progressing", "paused")
                    or rollout.strategy not in ("canary", "ab")
                    or analysis.candidate_version != rollout.version
                ):
                    return None
                progress = Progress.model_validate(rollout.progress)
                if rollout.strategy == "canary" and analysis.step != progress.percent:
                    return None  # a verdict on an earlier step
                progress.verdict = Verdict(
                    step=analysis.step,
                    verdict=analysis.verdict,
                    reason=analysis.reason,
                    at=_now(),
                    p_value=analysis.p_value,
                )
                await self.store.set_rollout_progress(s, rollout.id, progress.model_dump(mode="json"))
            return await self._progress(rollout.id)

    async def on_anomaly_detected(self, anomaly: AnomalyDetected) -> Rollout | None:
        """A candidate whose latency or error rate turns anomalous mid-rollout is rolled back."""
        if anomaly.state != "firing" or anomaly.metric not in ROLLBACK_ANOMALIES or anomaly.version is None:
            return None
        async with self._lock(anomaly.model), self.store.transaction() as s:
            rollout = await self.store.active_rollout(s, anomaly.model)
            if (
                rollout is None
                or rollout.version != anomaly.version
                or rollout.strategy not in ("canary", "blue_green")
            ):
                return None
            progress = Progress.model_validate(rollout.progress)
            reason = f"{anomaly.metric} anomaly on v{anomaly.version}: {anomaly.detail or anomaly.value}"
            return await self._decide(s, rollout, progress, Decision("rollback", reason))

    async def progress_tick(self) -> None:
        """Advance every progressing rollout whose hold is over, and end those past their deadline."""
        async with self.store.transaction() as s:
            rollouts = [r for r in await self.store.unfinished_rollouts(s) if r.progress is not None]
        for rollout in rollouts:
            if rollout.phase == "progressing":
                async with self._lock(rollout.model):
                    await self._progress(rollout.id)

    async def _progress(self, rollout_id: str) -> Rollout | None:
        retire: Deployment | None = None
        async with self.store.transaction() as s:
            rollout = await self.store.rollout(s, rollout_id)
            if rollout is None or rollout.phase != "progressing" or rollout.progress is None:
                return rollout
            progress = Progress.model_validate(rollout.progress)
            decision = decide(rollout.strategy, progress, _now())
            if decision.action == "hold":
                return rollout
            if decision.action == "retire_previous" and progress.baseline is not None:
                retire = await self.store.deployment(s, rollout.model, progress.baseline)
            done = await self._decide(s, rollout, progress, decision)
        if retire is not None:
            await self._retire_unrouted(retire)
        return done

    async def _decide(
        self, s: AsyncSession, rollout: Rollout, progress: Progress, decision: Decision
    ) -> Rollout:
        """Apply a decision: a new table and phase, persisted and announced in one transaction."""
        current = await self.store.route(s, rollout.model) or empty_table(rollout.model)
        apps = await self._apps(s, rollout.model)
        phase: RolloutPhase
        step = rollout.step
        table: RouteTable | None
        if decision.action == "advance":
            assert progress.baseline is not None
            progress.index += 1
            progress.step_started_at, progress.verdict = _now(), None
            table = canary_table(current, progress.baseline, rollout.version, progress.percent, apps)
            phase, step, cause = "progressing", progress.percent, "progressive"
        elif decision.action == "promote":
            table = direct_table(current, rollout.version, apps[rollout.version])
            phase, step, cause = "promoted", 100, "direct"
        elif decision.action in ("rollback", "keep_baseline", "abort"):
            assert progress.baseline is not None
            table = direct_table(current, progress.baseline, apps[progress.baseline])
            phase, cause = ("aborted" if decision.action == "abort" else "rolled_back"), "rollback"
        else:  # retire_previous: the table stays; blue goes
            table, phase, cause = None, "promoted", "direct"
        await self.store.set_rollout_progress(s, rollout.id, progress.model_dump(mode="json"))
        if table is not None:
            await self.store.save_route(
                s, table, team=rollout.team, cause=cause, rollout_id=rollout.id, by=rollout.requested_by
            )
        done = await self.store.set_rollout_phase(s, rollout.id, phase, step=step, reason=decision.reason)
        await self._announce(s, done, table or current, kpi=progress.kpi)
        log.info(
            "rollout " + decision.action.replace("_", " "),
            model=rollout.model,
            version=rollout.version,
            phase=phase,
            reason=decision.reason,
        )
        return done

    async def _retire_unrouted(self, dep: Deployment) -> None:
        """Retire a deployment the route table no longer uses (blue after its rollback window)."""
        async with self.store.transaction() as s:
            table = await self.store.route(s, dep.model) or empty_table(dep.model)
            if any(a.version == dep.version for a in table.arms):
                return
            await self.store.set_deployment_state(s, dep.model, dep.version, "retired")
        error = await self._unplace(dep)
        if error:
            async with self.store.transaction() as s:
                await self.store.set_deployment_state(
                    s, dep.model, dep.version, "retired", f"retired, but removing it from Ray failed: {error}"
                )

    async def command(self, rollout_id: str, command: RolloutCommand, requested_by: str) -> Rollout:
        """A person steps in: ``pause``, ``resume``, ``promote`` or ``abort`` a progressive rollout."""
        rollout = await self.rollout(rollout_id)
        async with self._lock(rollout.model), self.store.transaction() as s:
            rollout = await self.store.rollout(s, rollout_id)
            assert rollout is not None
            if rollout.progress is None or rollout.phase not in ("progressing", "paused"):
                raise Conflict(
                    f"rollout {rollout_id} is {rollout.phase}; only a progressive rollout under way "
                    f"can be {COMMAND_PAST[command]}",
                    field="rollout_id",
                )
            progress = Progress.model_validate(rollout.progress)
            who = f"by {requested_by}"
            if command == "pause":
                if rollout.phase == "paused":
                    return rollout
                await self.store.set_rollout_progress(s, rollout.id, progress.model_dump(mode="json"))
                done = await self.store.set_rollout_phase(
                    s, rollout.id, "paused", reason=f"paused {who} at step {rollout.step}"
                )
            elif command == "resume":
                if rollout.phase == "progressing":
                    return rollout
                progress.step_started_at = _now()  # the hold starts again
                await self.store.set_rollout_progress(s, rollout.id, progress.model_dump(mode="json"))
                done = await self.store.set_rollout_phase(
                    s, rollout.id, "progressing", reason=f"resumed {who}"
                )
            elif command == "promote":
                return await self._decide(s, rollout, progress, Decision("promote", f"promoted {who}"))
            else:
                return await self._decide(s, rollout, progress, Decision("abort", f"aborted {who}"))
            current = await self.store.route(s, rollout.model) or empty_table(rollout.model)
            await self._announce(s, done, current, kpi=progress.kpi)
            return done

    # ------------------------------------------------------------------ serving engine

    async def _place(
        self, dep: Deployment, spec: ModelSpec, *, force: bool = False, committed_at: float | None = None
    ) -> tuple[Any, str | None]:
        """Make the serving engine run ``dep``; returns its new state and the error, if any."""
        if dep.placement.kind == "pool":
            refusal = pool_refusal(spec, self.policy.sizing.model_budget_bytes)
            if refusal is not None:
                log.warning("refused from the pool", model=dep.model, version=dep.version, reason=refusal)
                return "failed", refusal
        if not self.serving.connected:
            return ("pending" if dep.state != "ready" else "ready"), None
        if dep.state == "ready" and not force:
            return "ready", None
        try:
            if dep.placement.kind == "pool":
                await self._apply_pool(committed_at)
            else:
                assert dep.quota is not None
                await self.serving.apply_dedicated(
                    spec, dep.quota, self.policy.idle_unload_s, self.policy.env
                )
        except Exception as exc:
            log.warning("placing a version failed", model=dep.model, version=dep.version, error=_error(exc))
            return "failed", _error(exc)
        return "ready", None

    async def _apply_pool(self, committed_at: float | None = None) -> None:
        """Apply the pool's config as stored once ``committed_at`` (default: now), coalesced with
        every other change waiting for the pool (``PoolApplier``)."""
        await self.pool.ensure(committed_at)

    async def _apply_pool_now(self) -> None:
        async with self.store.transaction() as s:
            specs = await self.store.pool_specs(s)
        config = pool_config(
            specs, idle_unload_s=self.policy.idle_unload_s, budget_bytes=self.policy.sizing.model_budget_bytes
        )
        await self.serving.apply_pool(config, self.policy.sizing, self.policy.env)

    async def _unplace(self, dep: Deployment) -> str | None:
        if not self.serving.connected:
            return None
        try:
            if dep.placement.kind == "pool":
                await self._apply_pool()
            else:
                await self.serving.remove(dep.placement.app)
        except Exception as exc:
            log.warning("removing a version failed", model=dep.model, version=dep.version, error=_error(exc))
            return _error(exc)
        return None

    async def _cleanup_previous(self, dep: Deployment, previous: dict[str, Any]) -> None:
        """The version moved between the pool and a dedicated deployment: drop the old home."""
        if not self.serving.connected:
            return
        try:
            if previous.get("kind") == "dedicated" and previous.get("app") != dep.placement.app:
                await self.serving.remove(str(previous["app"]))
            elif previous.get("kind") == "pool":
                await self._apply_pool()
        except Exception as exc:
            log.warning("cleaning up the previous placement failed", model=dep.model, error=_error(exc))

    async def reconcile(self, *, initial: bool = False) -> None:
        """Bring Ray Serve in line with the database, then finish interrupted direct rollouts.

        At start (``initial``) the pool config is re-applied (a reconfigure, no restart) and every
        dedicated application that should exist but does not is created; running ones are left alone.
        Later passes only re-create what went missing.
        """
        if self.serving.connected:
            await self._reconcile_serving(initial)
        listed_at = time.monotonic()
        async with self.store.transaction() as s:
            unstarted = [
                r
                for r in await self.store.unfinished_rollouts(s)
                if r.phase in UNFINISHED and r.progress is None
            ]
        by_model: dict[str, list[Rollout]] = {}
        for rollout in unstarted:
            by_model.setdefault(rollout.model, []).append(rollout)
        limit = asyncio.Semaphore(EXECUTE_CONCURRENCY)

        async def resume(model: str, rollouts: list[Rollout]) -> None:
            # A model whose lock is held is being deployed right now (a batch of registrations,
            # a request): its rollouts are that caller's to finish.
            async with limit:
                if self._lock(model).locked():
                    return
                async with self._lock(model):
                    for rollout in rollouts:
                        if rollout.id in self._in_flight:
                            continue
                        # Committed before the listing: one pool round covers every resumed one.
                        await self._execute(rollout.id, committed_at=listed_at, resumed=True)

        results = await asyncio.gather(
            *(resume(model, rollouts) for model, rollouts in by_model.items()), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _reconcile_serving(self, initial: bool) -> None:
        apps = await self.serving.list_apps()
        # Models being deployed right now (their lock is held; taken before the read, so a state
        # read here is never older than the end of a deploy): their callers apply the pool.
        busy = {model for model, lock in self._locks.items() if lock.locked()}
        async with self.store.transaction() as s:
            deployments = await self.store.deployments(s)
        pool = [d for d in deployments if d.placement.kind == "pool"]
        async with self.store.transaction() as s:
            refused = {
                (spec.model, spec.version): reason
                for spec in await self.store.pool_specs(s)
                if (reason := pool_refusal(spec, self.policy.sizing.model_budget_bytes)) is not None
            }
        fitting = [d for d in pool if (d.model, d.version) not in refused and d.model not in busy]
        if fitting and (initial or POOL_APP not in apps or any(d.state != "ready" for d in fitting)):
            try:
                await self._apply_pool()
                state, error = "ready", None
            except Exception as exc:
                state, error = "failed", _error(exc)
            async with self.store.transaction() as s:
                for d in fitting:
                    await self.store.set_deployment_state(s, d.model, d.version, state, error)  # type: ignore[arg-type]
        async with self.store.transaction() as s:
            for d in pool:
                reason = refused.get((d.model, d.version))
                if reason is not None and (d.state, d.error) != ("failed", reason):
                    await self.store.set_deployment_state(s, d.model, d.version, "failed", reason)
        for d in deployments:
            if d.placement.kind != "dedicated":
                continue
            if d.placement.app in apps and d.state == "ready":
                continue
            if d.placement.app in apps and d.state in ("pending", "deploying"):
                state, error = "ready", None
            elif d.placement.app in apps and not initial:
                continue
            else:
                async with self.store.transaction() as s:
                    spec = (await self.store.specs(s, d.model, [d.version]))[d.version]
                state, error = await self._place(d, spec, force=True)
            async with self.store.transaction() as s:
                await self.store.set_deployment_state(s, d.model, d.version, state, error)

    async def flush_activity(self) -> int:
        """Write accumulated last-request times; returns how many versions were written."""
        batch = self.activity.drain()
        if not batch:
            return 0
        try:
            async with self.store.transaction() as s:
                await self.store.record_activity(s, batch)
        except BaseException:
            self.activity.restore(batch)
            raise
        return len(batch)

    # ------------------------------------------------------------------ views

    async def model_route(self, model: str) -> ModelRoute:
        async with self.store.transaction() as s:
            team = await self.store.team_of(s, model)
            if team is None:
                raise NotFound(f"model '{model}' is not known to the deployer", field="model")
            table = await self.store.route(s, model) or empty_table(model)
            return (await self._model_routes(s, [(team, table)], teams=None, model=model))[0]

    async def _model_routes(
        self,
        s: AsyncSession,
        tables: list[tuple[str, RouteTable]],
        *,
        teams: list[str] | None,
        model: str | None = None,
    ) -> list[ModelRoute]:
        """Each table with every version it names, plus every other live deployment of its model
        (so a gateway can serve explicit-version requests for versions at 0 %). A fixed number of
        queries whatever the number of models: live deployments in one, retired versions an arm
        still names in another."""
        served: dict[str, dict[int, ServedVersion]] = {t.model: {} for _, t in tables}
        for dep, spec in await self.store.routed_deployments(s, teams=teams, model=model):
            if dep.model in served:
                served[dep.model][dep.version] = dep.served(spec)
        named = {(t.model, a.version) for _, t in tables for a in t.arms if a.version not in served[t.model]}
        if named:
            for dep, spec in await self.store.deployments_at(s, named):
                served[dep.model][dep.version] = dep.served(spec)
        return [
            ModelRoute(
                model=table.model,
                team=team,
                table=table,
                versions=[served[table.model][v] for v in sorted(served[table.model])],
            )
            for team, table in tables
        ]

    async def snapshot(self, teams: list[str] | None) -> RoutesSnapshot:
        async with self.store.transaction() as s:
            routes = await self._model_routes(s, await self.store.routes(s, teams=teams), teams=teams)
        return RoutesSnapshot(models=routes, generated_at=_now())

    async def deployment_views(
        self,
        where: DeploymentFilter,
        *,
        sort: DeploymentSort = "name",
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[DeploymentView], int, dict[str, AppView | None]]:
        """A page of deployments with traffic, activity and replicas, how many match in all, and
        the Serve view of each application on the page (each asked once: the pool once).

        Filtering, sorting and paging run in SQL; only a sort by traffic (a route table's weight)
        orders the matching rows here. The last-request times gathered in memory are written first,
        so the idle filter and the last-request sort see every request up to now."""
        await self.flush_activity()
        now = _now()
        idle_after = timedelta(seconds=self.policy.idle_unload_s)
        by_traffic = sort in ("traffic", "-traffic")
        async with self.store.transaction() as s:
            rows, total = await self.store.deployment_page(
                s,
                where,
                idle_before=now - idle_after,
                sort="name" if by_traffic else sort,
                limit=None if by_traffic else limit,
                offset=0 if by_traffic else offset,
            )
            tables = await self.store.routes_of(s, {d.model for d, _ in rows})

        def weight(row: tuple[Deployment, datetime | None]) -> float:
            dep = row[0]
            return weight_of(tables.get(dep.model) or empty_table(dep.model), dep.version)

        if by_traffic:
            # Stable: equal weights stay in name order, so pages never overlap.
            rows = sorted(rows, key=weight, reverse=sort == "-traffic")
            rows = rows[offset:] if limit is None else rows[offset : offset + limit]
        pending = self.activity.pending()
        apps: dict[str, AppView | None] = {}
        for app in sorted({d.placement.app for d, _ in rows if d.state != "retired"}):
            apps[app] = await self._describe(app)
        views = []
        for d, stored in rows:
            last = max(filter(None, (stored, pending.get((d.model, d.version)))), default=None)
            table = tables.get(d.model) or empty_table(d.model)
            view = apps.get(d.placement.app)
            views.append(
                DeploymentView(
                    model=d.model,
                    version=d.version,
                    team=d.team,
                    placement=d.placement,
                    quota=d.quota,
                    state=d.state,
                    error=d.error,
                    replicas=view.replicas if view else None,
                    last_request_at=last,
                    idle=now - (last or d.updated_at) > idle_after,
                    traffic_weight=weight_of(table, d.version),
                    shadow=any(a.version == d.version and a.mode == "shadow" for a in table.arms),
                    created_at=d.created_at,
                    updated_at=d.updated_at,
                )
            )
        return views, total, apps

    async def pool_view(self, teams: list[str] | None) -> PoolView:
        """The pool's replicas as they report themselves, and the versions refused from it."""
        async with self.store.transaction() as s:
            specs = await self.store.pool_specs(s)
        try:
            stats = await self.serving.pool_stats()
        except Exception as exc:  # the pool app absent, or Ray unreachable: show what we know
            log.info("pool stats unavailable", error=_error(exc))
            stats = []
        return pool_view(stats, specs, self.policy.sizing, teams, connected=self.serving.connected)

    async def _describe(self, app: str) -> AppView | None:
        try:
            return await self.serving.describe(app)
        except Exception as exc:
            log.info("describe failed", app=app, error=_error(exc))
            return None
