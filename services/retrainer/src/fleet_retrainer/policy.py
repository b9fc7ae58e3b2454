"""Retraining policy: whether a trigger starts a job now, waits, or is skipped, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from fleet_core.schemas import Contract

Trigger = Literal["drift", "schedule", "manual", "dataset"]
JobState = Literal["queued", "running", "registered", "rejected", "failed"]
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})


class RetrainPolicy(Contract):
    """Per model; defaults suit a model that retrains at most hourly on real traffic."""

    auto_retrain: bool = Field(default=True, description="Retrain on drift, schedules and new datasets")
    cooldown_s: Annotated[float, Field(ge=0)] = Field(
        default=3600.0, description="Least time between the end of one job and the start of the next"
    )
    min_new_labelled_rows: Annotated[int, Field(ge=0)] = Field(
        default=100, description="Labelled rows from traffic a job needs (manual requests excepted)"
    )
    max_concurrent_jobs: Annotated[int, Field(ge=1)] = Field(
        default=1, description="Jobs running at once across all models (a box-wide limit)"
    )
    min_improvement: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="How much the candidate must beat the champion on the holdout"
    )
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.3, description="Share of the newest labelled rows kept out of training for the gate"
    )
    schedule_every_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Retrain on a schedule as well (None: only on triggers)"
    )


@dataclass(frozen=True, slots=True)
class JobSummary:
    model: str
    state: str
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    action: Literal["start", "queue", "skip"]
    reason: str


def admit(
    model: str,
    trigger: Trigger,
    policy: RetrainPolicy,
    jobs: list[JobSummary],
    *,
    labelled_rows: int,
    now: datetime,
) -> Admission:
    """Decide what a trigger does. ``jobs`` are every model's recent jobs (for the box-wide limit)."""
    mine = [j for j in jobs if j.model == model]
    active = next((j for j in mine if j.state in ACTIVE_STATES), None)
    if active is not None:
        return Admission("skip", f"a job for {model} is already {active.state}; one job per model at a time")
    if trigger != "manual":
        if not policy.auto_retrain:
            return Admission("skip", f"auto-retrain is off for {model}; a {trigger} trigger starts nothing")
        finished = [j.finished_at for j in mine if j.finished_at is not None]
        if finished:
            ready_at = max(finished) + timedelta(seconds=policy.cooldown_s)
            if now < ready_at:
                wait = (ready_at - now).total_seconds()
                return Admission(
                    "skip",
                    f"cooldown: the last job for {model} ended less than "
                    f"{policy.cooldown_s:g} s ago ({wait:.0f} s to go)",
                )
        if labelled_rows < policy.min_new_labelled_rows:
            return Admission(
                "skip",
                f"{labelled_rows} labelled rows from traffic; {policy.min_new_labelled_rows} needed",
            )
    running = sum(1 for j in jobs if j.state == "running")
    if running >= policy.max_concurrent_jobs:
        return Admission("queue", f"{running} job(s) running; at most {policy.max_concurrent_jobs} at once")
    return Admission("start", f"{trigger} trigger admitted")
