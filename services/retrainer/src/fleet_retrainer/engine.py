"""The retrainer's behaviour: triggers become jobs (by policy), jobs run one pipeline, and every
outcome is published.

A job: look up the champion (its recipe, task and training data) → fetch labelled traffic from
the inference lake → assemble a dataset (newest labelled rows held out) → train a candidate by the
recipe (a Ray task) → judge champion and candidate on the same holdout → register a winner with
its lineage (parent version, dataset version, triggering event) and request a canary, or reject
the loser with the reasons → ``retrain.completed``. State changes and the events announcing them
commit together (outbox). A job interrupted by a restart is marked failed, never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from fleet_core.errors import FleetError, NotFound, Unavailable
from fleet_core.events import (
    DatasetRef,
    RetrainCompleted,
    RolloutRequested,
    Topic,
)
from fleet_core.log import get_logger
from fleet_core.schemas import Recipe, Signature
from fleet_retrainer.dataset import Assembled, assemble, labelled_frame, without_hashed_pii
from fleet_retrainer.entities import Job
from fleet_retrainer.gate import GateResult, judge
from fleet_retrainer.platform import SERVICE_SUBJECT, Fleet, job_marker, spec_of
from fleet_retrainer.policy import Admission, RetrainPolicy, Trigger, admit
from fleet_retrainer.store import RetrainerStore
from fleet_retrainer.trainer import Trainer

log = get_logger(__name__)
FINISHED = ("registered", "rejected", "failed")
WAIT_FOR_LABELS_S = 1800.0
"""How long a drift or dataset trigger waits for enough labelled traffic before it lapses."""
TEAM_TTL_S = 60.0
"""How long the registry's answer to "which team is this model in" is reused."""


class JobFailed(Exception):
    """A job cannot go on; the message says why (recorded on the job and in retrain.completed)."""


@dataclass(frozen=True)
class _Waiting:
    """An automatic trigger that found too few labelled rows, retried until ``until``."""

    trigger: Trigger
    event_id: str | None
    version: int | None
    requested_by: str
    until: datetime
    dataset: tuple[str, int] | None


def _with_outcome(
    result: dict[str, Any],
    *,
    verdict: GateResult | None = None,
    data: Assembled | None = None,
    dataset: DatasetRef | None = None,
) -> dict[str, Any]:
    """A job's ``result`` with the gate's verdict, the data's sizes and the new dataset version."""
    result = dict(result)
    if verdict is not None:
        result.update(
            metric=verdict.metric,
            champion_metrics=verdict.champion,
            candidate_metrics=verdict.candidate,
            reasons=verdict.reasons,
        )
    if dataset is not None:
        result["dataset_version"] = dataset.model_dump(mode="json")
    if data is not None:
        result.update(
            train_rows=len(data.train), holdout_rows=len(data.holdout), traffic_rows=data.traffic_rows
        )
    return result


def _now() -> datetime:
    return datetime.now(UTC)


class RetrainController:
    """Triggers, the job pipeline and the reads behind the API.

    ``max_concurrent_jobs`` is box-wide and comes from the service's settings, never from a
    model's policy (one team must not raise it for everyone). ``trusted_types`` are the serving
    engine's extra skops types (``FLEET_SERVING_TRUSTED_TYPES``): a champion loads as it is served.
    """

    def __init__(
        self,
        store: RetrainerStore,
        fleet: Fleet,
        trainer: Trainer,
        *,
        default_policy: RetrainPolicy,
        canary_steps: list[int],
        canary_step_interval_s: float,
        max_concurrent_jobs: int = 1,
        trusted_types: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.trainer = trainer
        self.default_policy = default_policy
        self.canary_steps = canary_steps
        self.canary_step_interval_s = canary_step_interval_s
        self.max_concurrent_jobs = max_concurrent_jobs
        self.trusted_types = tuple(trusted_types)
        self._teams: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Automatic triggers that found too few labels yet: retried by the timer until they expire.
        self._waiting: dict[str, _Waiting] = {}

    async def policy(self, model: str) -> RetrainPolicy:
        async with self.store.transaction() as s:
            own = await self.store.policy(s, model)
        if not own:
            return self.default_policy
        # A policy stored by an older release may hold fields that are no longer per model
        # (max_concurrent_jobs is box-wide now): they are ignored, never applied.
        known = {k: v for k, v in own.items() if k in RetrainPolicy.model_fields}
        try:
            return RetrainPolicy.model_validate({**self.default_policy.model_dump(), **known})
        except ValidationError as exc:
            log.warning(
                "a stored retraining policy is invalid; the defaults apply", model=model, error=str(exc)
            )
            return self.default_policy

    async def team_of(self, model: str) -> str | None:
        """The team ``model`` belongs to, from the registry (None: the registry has no such model).
        An unreachable registry is ``Unavailable``: access is never decided without the team."""
        cached = self._teams.get(model)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            team = await self.fleet.model_team(model)
        except Exception as exc:
            raise Unavailable(
                f"cannot ask the registry which team {model!r} belongs to: {type(exc).__name__}: {exc}"
            ) from exc
        if team is not None:
            self._teams[model] = (team, time.monotonic() + TEAM_TTL_S)
        return team

    # ----------------------------------------------------------------- triggers

    async def on_trigger(
        self,
        model: str,
        trigger: Trigger,
        *,
        requested_by: str,
        event_id: str | None = None,
        topic: Topic | None = None,
        version: int | None = None,
        cause: str | None = None,
        dataset: tuple[str, int] | None = None,
    ) -> tuple[Admission, Job | None]:
        """Apply the policy to a trigger; start or queue a job, or say why not. ``event_id`` is
        claimed (idempotency); ``cause`` only names the event on the job (a retried trigger);
        ``dataset`` (name, version): the new dataset version a ``dataset`` trigger announced, which
        the job trains on instead of the champion's."""
        if dataset is not None:
            # The event only named a version: the registry says who wrote it. The retrainer's own
            # write (the training data of a version it registered) is no news to retrain on; taken
            # as one, every job would start the next as soon as the cooldown allows.
            try:
                written = await self.fleet.dataset_version(*dataset)
            except NotFound:
                return Admission("skip", f"dataset {dataset[0]!r} has no version {dataset[1]}"), None
            if written.get("created_by") == SERVICE_SUBJECT:
                reason = f"dataset {dataset[0]!r} v{dataset[1]} was written by the retrainer itself"
                log.info("retrain trigger skipped", model=model, trigger=trigger, reason=reason)
                return Admission("skip", reason), None
        policy = await self.policy(model)
        team = await self.team_of(model)
        labelled = 0
        if trigger != "manual":  # enough labels? Ask for no more rows than the policy needs.
            labelled = len(await self.fleet.labelled_rows(model, limit=max(policy.min_new_labelled_rows, 1)))
        async with self._lock, self.store.transaction() as s:
            fresh = (
                event_id is None or topic is None or await self.store.claim(s, event_id=event_id, topic=topic)
            )
            if not fresh:
                return Admission("skip", f"event {event_id} was handled already"), None
            jobs = await self.store.summaries(s)
            decision = admit(
                model,
                trigger,
                policy,
                jobs,
                labelled_rows=labelled,
                now=_now(),
                max_concurrent_jobs=self.max_concurrent_jobs,
            )
            if decision.action == "skip":
                log.info("retrain trigger skipped", model=model, trigger=trigger, reason=decision.reason)
                if "labelled rows" in decision.reason:
                    until = _now() + timedelta(seconds=WAIT_FOR_LABELS_S)
                    self._waiting[model] = _Waiting(trigger, event_id, version, requested_by, until, dataset)
                return decision, None
            self._waiting.pop(model, None)
            job = await self.store.add_job(
                s,
                model=model,
                team=team,
                trigger=trigger,
                trigger_event_id=event_id or cause,
                requested_by=requested_by,
                champion_version=version,
                source_dataset=dataset,
                state="queued",
                reason=f"{trigger} trigger by {requested_by}: {decision.reason}",
            )
        await self.dispatch()
        return decision, job

    async def dispatch(self) -> None:
        """Start queued jobs while the box-wide limit allows."""
        async with self._lock:
            async with self.store.transaction() as s:
                queued = list(reversed(await self.store.jobs(s, state="queued", limit=1000)))
                running = len(await self.store.jobs(s, state="running", limit=1000))
            for job in queued:
                if running >= self.max_concurrent_jobs:
                    break
                async with self.store.transaction() as s:
                    await self.store.update_job(s, job.id, state="running", started_at=_now())
                running += 1
                self._tasks[job.id] = asyncio.create_task(self._run(job.id), name=f"retrain-{job.id[:8]}")

    async def recover(self) -> int:
        """At start: a job left running by a dead process is never re-run. If it had registered
        its winner (the crash came between the registry's answer and the job's own record), the
        job ends ``registered`` with that version and its canary is requested, as it would have
        been; otherwise it is failed. Then queued jobs are started. Returns the jobs recovered."""
        async with self.store.transaction() as s:
            stale = await self.store.jobs(s, state="running", limit=10_000)
        for job in stale:
            reason = "the retrainer restarted while the job ran"
            found: dict[str, Any] | None = None
            if job.champion_version is not None:
                try:
                    found = await self.fleet.registered_by_job(
                        job.model, job.id, parent_version=job.champion_version
                    )
                except Exception as exc:
                    reason += f"; whether it registered a version could not be checked ({exc})"
            async with self.store.transaction() as s:
                current = await self.store.job(s, job.id)
                if current is None or current.state != "running":
                    continue
                if found is None:
                    await self._finish(s, current, "failed", reason=reason)
                    continue
                await self.store.log(
                    s, job.id, f"{reason}, after v{found['version']} was registered: the job completes"
                )
                await self._registered(s, current, found, reason=current.result.get("reasons", [reason])[0])
        await self.dispatch()
        return len(stale)

    async def stop(self) -> None:
        # A copy: a job that ends while we wait removes itself from _tasks.
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ----------------------------------------------------------------- the pipeline

    async def _log(self, job_id: str, line: str) -> None:
        async with self.store.transaction() as s:
            await self.store.log(s, job_id, line)
        log.info("retrain job", job_id=job_id, step=line)

    async def _run(self, job_id: str) -> None:
        async with self.store.transaction() as s:
            job = await self.store.job(s, job_id)
        assert job is not None
        try:
            await self._pipeline(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, JobFailed) else f"{type(exc).__name__}: {exc}"
            log.warning("retrain job failed", job_id=job_id, model=job.model, error=reason)
            async with self.store.transaction() as s:
                await self.store.log(s, job_id, f"failed: {reason}")
                current = await self.store.job(s, job_id)
                assert current is not None
                await self._finish(s, current, "failed", reason=reason)
        finally:
            self._tasks.pop(job_id, None)
            await self.dispatch()

    async def _pipeline(self, job: Job) -> None:
        policy = await self.policy(job.model)
        number = job.champion_version or await self.fleet.latest_version(job.model)
        if number is None:
            raise JobFailed(f"the registry has no model {job.model!r}")
        try:
            champion = await self.fleet.version(job.model, number)
        except Exception as exc:
            raise JobFailed(f"cannot read {job.model} v{number} from the registry: {exc}") from exc
        try:
            recipe = Recipe.model_validate(champion["recipe"]) if champion.get("recipe") else None
        except ValidationError as exc:  # stored before the recipe allow-list, or never allowed
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "recipe"
            raise JobFailed(
                f"{job.model} v{number}'s recipe is refused ({where}: {first['msg']}); nothing was run"
            ) from exc
        if recipe is None or not recipe.target:
            raise JobFailed(f"{job.model} v{number} has no recipe with a target: it cannot be rebuilt")
        if champion["task"] not in ("classification", "regression"):
            raise JobFailed(
                f"{job.model} v{number} has task {champion['task']!r}; the gate needs one it can score"
            )
        source = champion.get("dataset_version")
        if job.source_dataset is not None and job.source_dataset_version is not None:
            # A dataset trigger: the new version it announced, not the one the champion was trained
            # on (the registry is asked for it below; the event only named it).
            source = {"dataset": job.source_dataset, "version": job.source_dataset_version}
        if not source:
            raise JobFailed(f"{job.model} v{number} records no training dataset")
        team = champion["team"]
        owner = await self.fleet.dataset_team(source["dataset"])
        if owner != team:
            # The job reads the dataset and writes a new version of it with a token that sees every
            # team: it must never carry one team's data into another's model, nor write to it.
            raise JobFailed(
                f"dataset {source['dataset']!r} belongs to team {owner!r}, not to {job.model}'s team "
                f"{team!r}: the retrainer reads and writes only datasets of the model's team"
            )
        async with self.store.transaction() as s:
            await self.store.update_job(s, job.id, champion_version=number)
        await self._log(
            job.id,
            f"champion v{number}: recipe {recipe.estimator or recipe.function}, target {recipe.target}",
        )

        try:
            base = await self.fleet.dataset(source["dataset"], source["version"])
        except Exception as exc:
            raise JobFailed(
                f"cannot read dataset {source['dataset']!r} v{source['version']} from the registry: {exc}"
            ) from exc
        features = [f["name"] for f in champion["signature"]["inputs"]]
        missing = [c for c in (*features, recipe.target) if c not in base.columns]
        if missing:
            raise JobFailed(
                f"dataset {source['dataset']!r} v{source['version']} lacks the columns {missing} that "
                f"{job.model} v{number} is trained on"
            )
        pii = [f["name"] for f in champion["signature"]["inputs"] if f.get("pii")]
        rows, hashed = without_hashed_pii(await self.fleet.labelled_rows(job.model), pii)
        if hashed:
            await self._log(job.id, f"{hashed} labelled rows dropped: their PII inputs {pii} are hashes")
            if not rows:
                raise JobFailed(
                    f"all {hashed} labelled rows of {job.model} hold only hashes of its PII inputs {pii} "
                    "(the gateway never logs them in the clear): there is no traffic to retrain on, and "
                    "no hash is copied into a dataset"
                )
        traffic = labelled_frame(rows, features, recipe.target)
        await self._log(
            job.id,
            f"data: {len(base)} training rows of {source['dataset']} v{source['version']}, "
            f"{len(traffic)} labelled rows from traffic",
        )
        data = assemble(
            base[[*features, recipe.target]],
            traffic,
            target=recipe.target,
            holdout_fraction=policy.holdout_fraction,
        )
        await self._log(
            job.id,
            f"dataset {data.content_hash[:12]}: {len(data.train)} rows to train on, "
            f"{len(data.holdout)} held out (the newest traffic)",
        )

        # The champion first: a champion that fails its integrity or trust check costs no training.
        champion_model = await self._load(job.model, number, champion)
        candidate = await self.trainer.train(recipe, data.train[features], data.train[recipe.target])
        await self._log(job.id, "candidate trained")
        verdict = judge(
            champion_model,
            candidate,
            data.holdout,
            target=recipe.target,
            task=champion["task"],
            min_improvement=policy.min_improvement,
        )
        await self._log(job.id, f"gate: {'; '.join(verdict.reasons)}")
        async with self.store.transaction() as s:
            current = await self.store.job(s, job.id)
            assert current is not None
            if not verdict.accepted:
                await self._finish(s, current, "rejected", reason=verdict.reasons[0], verdict=verdict)
                return
            # Kept before registering: a crash after the registry's answer leaves the verdict for
            # ``recover`` to complete the job with.
            await self.store.update_job(
                s, job.id, result=_with_outcome(current.result, verdict=verdict, data=data)
            )
        registered = await self.fleet.register(
            job.model,
            candidate,
            data.train[features],
            data.train[recipe.target],
            # The new version inherits what the champion was registered with: its team, its
            # signature (PII flags, ranges, categories), its quota and its tags. Its deploy policy
            # only when `gated`: it then passes the same delivery gate as a person's version, and
            # the gate (not the retrainer) starts its canary. Any other policy is not inherited: the
            # retrainer asks for the canary itself (below), and a champion's `direct` would send the
            # candidate live untested before the canary starts.
            team=team,
            deploy_policy="gated" if champion.get("deploy_policy") == "gated" else "none",
            signature=Signature.model_validate(champion["signature"]),
            quota=champion.get("quota"),
            tags=list(champion.get("tags") or []),
            X_test=data.holdout[features],
            y_test=data.holdout[recipe.target],
            dataset=source["dataset"],
            target_name=recipe.target,
            description=f"retrained from v{number} ({job.trigger}); {verdict.reasons[0]} "
            + job_marker(job.id),
            lineage={"origin": "retrain", "parent_version": number, "trigger_event_id": job.trigger_event_id},
        )
        await self._log(
            job.id,
            f"registered v{registered['version']} on dataset {registered['dataset_version']['dataset']} "
            f"v{registered['dataset_version']['version']}",
        )
        async with self.store.transaction() as s:
            current = await self.store.job(s, job.id)
            assert current is not None
            await self._registered(s, current, registered, reason=verdict.reasons[0])

    async def _registered(self, s: Any, job: Job, registered: dict[str, Any], *, reason: str) -> None:
        """The winner is in the registry: ask for its canary (unless its delivery gate will) and end
        the job ``registered`` (the gate's verdict is already in the job's result)."""
        team = registered["team"]
        if registered.get("deploy_policy") == "gated":
            await self.store.log(
                s, job.id, f"v{registered['version']} is gated: its delivery checks start its canary"
            )
            await self._finish(
                s,
                job,
                "registered",
                reason=reason,
                new_version=registered["version"],
                dataset=DatasetRef.model_validate(registered["dataset_version"])
                if registered.get("dataset_version")
                else None,
            )
            return
        rollout = RolloutRequested(
            model=job.model,
            version=registered["version"],
            strategy="canary",
            steps=self.canary_steps,
            step_interval_s=self.canary_step_interval_s,
            requested_by="service:retrainer",
            reason=f"retrained by job {job.id}: {reason}",
        )
        await self.store.publish(s, Topic.ROLLOUT_REQUESTED, rollout, auth=self.fleet.rollout_token(team))
        await self.store.log(
            s,
            job.id,
            f"canary requested for v{registered['version']} ({'/'.join(map(str, self.canary_steps))} %)",
        )
        dataset = registered.get("dataset_version")
        await self._finish(
            s,
            job,
            "registered",
            reason=reason,
            new_version=registered["version"],
            dataset=DatasetRef.model_validate(dataset) if dataset else None,
        )

    async def _load(self, model: str, version: int, champion: dict[str, Any]) -> Any:
        """The champion, loaded exactly as a serving replica loads it: its bytes must hash to the
        sha256 it was registered with, and skops trusts only the serving allow-list (never the
        types the registry merely recorded at upload)."""
        from fleet_serving.loading import verify_artifact
        from fleet_serving.runtimes.sklearn import SklearnRuntime

        if champion.get("flavor") != "sklearn":
            raise JobFailed(
                f"{model} v{version} is a {champion.get('flavor')!r} model; only sklearn retrains"
            )
        spec = spec_of({**champion, "model": model, "version": version, "flavor": "sklearn"})
        blob = await self.fleet.artifact(model, version)
        try:
            await asyncio.to_thread(verify_artifact, spec, blob)
            runtime = SklearnRuntime(spec, blob, extra_trusted=self.trusted_types)
            await asyncio.to_thread(runtime.load)
        except FleetError as exc:
            raise JobFailed(f"the champion {model} v{version} is refused: {exc.detail}") from exc
        return runtime.model

    async def _finish(
        self,
        s: Any,
        job: Job,
        state: str,
        *,
        reason: str,
        verdict: GateResult | None = None,
        new_version: int | None = None,
        dataset: DatasetRef | None = None,
        data: Assembled | None = None,
    ) -> None:
        result = _with_outcome(job.result, verdict=verdict, data=data, dataset=dataset)
        await self.store.update_job(
            s, job.id, state=state, reason=reason, result=result, new_version=new_version, finished_at=_now()
        )
        await self.store.publish(
            s,
            Topic.RETRAIN_COMPLETED,
            RetrainCompleted(
                job_id=job.id,
                model=job.model,
                outcome=state,  # type: ignore[arg-type]
                champion_version=job.champion_version,
                new_version=new_version,
                dataset_version=dataset,
                candidate_metrics=result.get("candidate_metrics", {}),
                champion_metrics=result.get("champion_metrics", {}),
                reasons=(result.get("reasons") if state != "failed" else None) or [reason],
            ),
        )

    # ----------------------------------------------------------------- reads and policies

    async def job(self, job_id: str) -> Job:
        """One job (access is checked by the caller against ``job.team``)."""
        async with self.store.transaction() as s:
            job = await self.store.job(s, job_id)
        if job is None:
            raise NotFound(f"no retraining job {job_id}", field="job_id")
        return job

    async def put_policy(self, model: str, policy: RetrainPolicy, *, by: str) -> RetrainPolicy:
        async with self.store.transaction() as s:
            await self.store.put_policy(
                s, model, policy.model_dump(mode="json", exclude_defaults=False), by=by
            )
        return await self.policy(model)

    async def schedule_tick(self) -> None:
        """Retry triggers that were waiting for labels; start scheduled retraining for models whose
        policy has ``schedule_every_s``."""
        for model, waiting in list(self._waiting.items()):
            if _now() > waiting.until:
                self._waiting.pop(model, None)
                log.info("retrain trigger expired waiting for labels", model=model, trigger=waiting.trigger)
                continue
            try:
                decision, _ = await self.on_trigger(
                    model,
                    waiting.trigger,
                    requested_by=waiting.requested_by,
                    version=waiting.version,
                    cause=waiting.event_id,
                    dataset=waiting.dataset,
                )
            except Exception as exc:  # one model's failing lookup must not hold up the others
                log.warning(
                    "retrying a waiting trigger failed", model=model, error=f"{type(exc).__name__}: {exc}"
                )
                continue
            if decision.action != "skip" or "labelled rows" not in decision.reason:
                self._waiting.pop(model, None)
        async with self.store.transaction() as s:
            policies = await self.store.policies(s)
            jobs = await self.store.summaries(s)
        for model, raw in policies.items():
            every = raw.get("schedule_every_s")
            if not every:
                continue
            mine = [j.created_at for j in jobs if j.model == model]
            if not mine or (_now() - max(mine)).total_seconds() >= every:
                try:
                    await self.on_trigger(model, "schedule", requested_by="schedule")
                except Exception as exc:
                    log.warning(
                        "scheduled retraining failed", model=model, error=f"{type(exc).__name__}: {exc}"
                    )
