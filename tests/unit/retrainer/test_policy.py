"""Retraining policy: one job per model, cooldowns, enough new labels, a box-wide limit; manual
requests skip the automatic conditions but never run two jobs for one model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from fleet_retrainer.policy import Admission, JobSummary, RetrainPolicy, Trigger
from fleet_retrainer.policy import admit as admit_with_limit

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
POLICY = RetrainPolicy(cooldown_s=3600, min_new_labelled_rows=100)


def admit(
    model: str, trigger: Trigger, policy: RetrainPolicy, jobs: list[JobSummary], **kw: Any
) -> Admission:
    """The policy with the service's default box-wide limit of one job at a time."""
    return admit_with_limit(model, trigger, policy, jobs, **{"max_concurrent_jobs": 1, **kw})


def test_a_drift_trigger_with_enough_labels_starts_a_job() -> None:
    assert admit("m", "drift", POLICY, [], labelled_rows=500, now=NOW).action == "start"


def test_a_second_trigger_while_a_job_runs_starts_nothing() -> None:
    jobs = [JobSummary("m", "running", NOW - timedelta(minutes=1))]
    for trigger in ("drift", "manual"):
        decision = admit("m", trigger, POLICY, jobs, labelled_rows=500, now=NOW)  # type: ignore[arg-type]
        assert decision.action == "skip" and "already running" in decision.reason


def test_a_drift_event_during_the_cooldown_starts_no_job_but_a_manual_request_does() -> None:
    done = [JobSummary("m", "registered", NOW - timedelta(minutes=30), NOW - timedelta(minutes=20))]
    drift = admit("m", "drift", POLICY, done, labelled_rows=500, now=NOW)
    assert drift.action == "skip" and "cooldown" in drift.reason
    assert admit("m", "manual", POLICY, done, labelled_rows=0, now=NOW).action == "start"
    later = admit("m", "drift", POLICY, done, labelled_rows=500, now=NOW + timedelta(hours=1))
    assert later.action == "start"


def test_too_few_labels_or_auto_retrain_off_skip_automatic_triggers() -> None:
    few = admit("m", "drift", POLICY, [], labelled_rows=20, now=NOW)
    assert few.action == "skip" and "20 labelled rows" in few.reason
    off = admit(
        "m", "schedule", POLICY.model_copy(update={"auto_retrain": False}), [], labelled_rows=500, now=NOW
    )
    assert off.action == "skip" and "auto-retrain is off" in off.reason


def test_the_box_wide_limit_queues_other_models() -> None:
    jobs = [JobSummary("other", "running", NOW)]
    assert admit("m", "drift", POLICY, jobs, labelled_rows=500, now=NOW).action == "queue"
    roomy = admit("m", "drift", POLICY, jobs, labelled_rows=500, now=NOW, max_concurrent_jobs=2)
    assert roomy.action == "start"


def test_a_model_policy_cannot_carry_the_box_wide_limit_nor_unbounded_numbers() -> None:
    for bad in (
        {"max_concurrent_jobs": 50},  # box-wide: FLEET_MAX_CONCURRENT_JOBS, the operator's alone
        {"cooldown_s": 1e308},
        {"cooldown_s": float("nan")},
        {"schedule_every_s": float("inf")},
        {"min_new_labelled_rows": 10**30},
    ):
        with pytest.raises(ValidationError):
            RetrainPolicy.model_validate(bad)
