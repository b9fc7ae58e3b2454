"""Retraining policy: whether a trigger starts a job now, waits, or is skipped, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from fleet_core.schemas import Contract

Trigger = Literal["drift", "schedule", "manual", "dataset"]
JobState = Literal["queued", "running", "registered", "rejected", "failed"]
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})
YEAR_S = 365 * 24 * 3600.0
MAX_LABELLED_ROWS = 1_000_000
"""The most labelled rows a job reads from the lake (and so the largest minimum a policy may ask)."""


class RetrainPolicy(Contract):
    """Per model; defaults suit a model that retrains at most hourly on real traffic.

    Only what concerns the model itself: how many jobs run at once on the box is the service's
    ``FLEET_MAX_CONCURRENT_JOBS``, which only the operator sets (a team must not raise it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    auto_retrain: bool = Field(default=True, description="Retrain on drift, schedules and new datasets")
    cooldown_s: Annotated[float, Field(ge=0, le=YEAR_S)] = Field(
        default=3600.0, description="Least time between the end of one job and the start of the next"
    )
    min_new_labelled_rows: Annotated[int, Field(ge=0, le=MAX_LABELLED_ROWS)] = Field(
        default=100, description="Labelled rows from traffic a job needs (manual requests excepted)"
    )
    min_improvement: Annotated[float, Field(ge=0, le=1e9)] = Field(
        default=0.0, description="How much the candidate must beat the champion on the holdout"
    )
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.3, description="Share of the newest labelled rows kept out of training for the gate"
    )
    schedule_every_s: Annotated[float, Field(gt=0, le=YEAR_S)] | None = Field(
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
    max_concurrent_jobs: int,
) -> Admission:
    """Decide what a trigger does. ``jobs`` are every model's recent jobs; ``max_concurrent_jobs``
    is the box-wide limit (a service setting, not part of any model's policy)."""
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
    if running >= max_concurrent_jobs:
        return Admission(
            "queue", f"{running} job(s) running; at most {max_concurrent_jobs} at once on this box"
        )
    return Admission("start", f"{trigger} trigger admitted")
