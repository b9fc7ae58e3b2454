"""Progressive delivery: the state of a canary, A/B, shadow or blue-green rollout, and the
decisions it takes. Plain Python, no I/O: the controller persists ``Progress`` inside the rollout
and applies what ``decide`` returns.

- **canary**: traffic steps (e.g. 5/25/50/100 %); a step advances when the monitor's latest
  verdict *for that step* is ``pass`` and the step has been held ``interval_s``; a ``fail`` verdict
  or an anomaly on the candidate rolls back at once.
- **ab**: a fixed sticky split; the monitor's significance test decides: ``pass`` promotes the
  candidate, ``fail`` keeps the baseline; no winner by the deadline keeps the baseline.
- **shadow**: the candidate gets copies of requests and answers nobody; a person promotes or
  aborts (or the deadline ends it, keeping the baseline).
- **blue_green**: green is smoke-tested, then takes all traffic at once; blue stays deployed for
  the rollback window, then is retired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from fleet_core.events import RouteArm, RouteTable, TrafficArm
from fleet_deployer.routing import WEIGHT_TOLERANCE, next_table

PROGRESSIVE = frozenset({"canary", "ab", "shadow", "blue_green"})
DEFAULT_AB_DURATION_S = 24 * 3600.0
DEFAULT_SHADOW_DURATION_S = 24 * 3600.0
DEFAULT_ROLLBACK_WINDOW_S = 300.0


class Verdict(BaseModel):
    """The monitor's latest verdict on the current step."""

    step: int
    verdict: Literal["pass", "fail", "inconclusive"]
    reason: str
    at: datetime
    p_value: float | None = None


class Progress(BaseModel):
    """What a progressive rollout must remember across restarts (stored with the rollout)."""

    baseline: int | None
    steps: list[int] = Field(default_factory=list)
    index: int = 0
    interval_s: float = 60.0
    step_started_at: datetime
    deadline: datetime | None = None
    verdict: Verdict | None = None
    arms: list[TrafficArm] | None = None
    kpi: str | None = None

    @property
    def percent(self) -> int:
        return self.steps[self.index] if self.steps else 100


Action = Literal["hold", "advance", "promote", "rollback", "keep_baseline", "abort", "retire_previous"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


HOLD = Decision("hold", "")


def decide(strategy: str, progress: Progress, now: datetime) -> Decision:
    """What a running (not paused) rollout should do now."""
    verdict = progress.verdict
    if strategy == "canary":
        if verdict is None or verdict.step != progress.percent:
            return HOLD
        if verdict.verdict == "fail":
            return Decision("rollback", f"canary failed at {progress.percent} %: {verdict.reason}")
        held = (now - progress.step_started_at).total_seconds()
        if verdict.verdict == "pass" and held >= progress.interval_s:
            # The last step is 100 %: reaching it is the promotion, with the baseline removed.
            if progress.index >= len(progress.steps) - 2:
                return Decision("promote", f"canary passed every step ({_steps(progress)}): {verdict.reason}")
            nxt = progress.steps[progress.index + 1]
            return Decision("advance", f"step {progress.percent} % passed ({verdict.reason}); to {nxt} %")
        return HOLD
    if strategy == "ab":
        if verdict is not None and verdict.verdict == "pass":
            return Decision("promote", f"A/B: the candidate wins: {verdict.reason}")
        if verdict is not None and verdict.verdict == "fail":
            return Decision("keep_baseline", f"A/B: the baseline wins: {verdict.reason}")
        if progress.deadline is not None and now >= progress.deadline:
            last = f" (last verdict: {verdict.reason})" if verdict else ""
            return Decision(
                "keep_baseline", f"A/B: no significant winner by the deadline; baseline kept{last}"
            )
        return HOLD
    if strategy == "shadow":
        if progress.deadline is not None and now >= progress.deadline:
            return Decision("keep_baseline", "shadow period over; the candidate was never promoted")
        return HOLD
    if strategy == "blue_green":
        if progress.deadline is not None and now >= progress.deadline:
            return Decision("retire_previous", "rollback window over: blue retired, green stays")
        return HOLD
    return HOLD


def _steps(progress: Progress) -> str:
    return "/".join(str(s) for s in progress.steps)


def new_progress(strategy: str, request: dict[str, Any], baseline: int | None, now: datetime) -> Progress:
    steps = [int(s) for s in request.get("steps") or [5, 25, 50, 100]]
    if not steps or steps[-1] != 100:
        steps.append(100)
    duration = request.get("duration_s")
    default = {
        "ab": DEFAULT_AB_DURATION_S,
        "shadow": DEFAULT_SHADOW_DURATION_S,
        "blue_green": DEFAULT_ROLLBACK_WINDOW_S,
    }.get(strategy)
    deadline = now + timedelta(seconds=float(duration or default)) if default is not None else None
    arms = [TrafficArm.model_validate(a) for a in request["arms"]] if request.get("arms") else None
    return Progress(
        baseline=baseline,
        steps=steps if strategy == "canary" else [],
        interval_s=float(request.get("step_interval_s") or 60.0),
        step_started_at=now,
        deadline=deadline,
        arms=arms,
        kpi=request.get("kpi"),
    )


# --------------------------------------------------------------------------- route tables


def _arm(version: int, weight: float, deployments: dict[int, str], **kw: Any) -> RouteArm:
    return RouteArm(version=version, weight=weight, deployment=deployments.get(version), **kw)


def canary_table(
    current: RouteTable, baseline: int, candidate: int, percent: float, deployments: dict[int, str]
) -> RouteTable:
    """``percent`` of primary traffic to the candidate, the rest to the baseline; shadows kept."""
    arms = [_arm(baseline, 100.0 - percent, deployments), _arm(candidate, float(percent), deployments)]
    arms += [a for a in current.arms if a.mode == "shadow" and a.version not in (baseline, candidate)]
    return next_table(current, arms)


def ab_table(
    current: RouteTable,
    baseline: int,
    candidate: int,
    arms: list[TrafficArm] | None,
    deployments: dict[int, str],
) -> RouteTable:
    """A sticky split: by routing key, each caller keeps its arm for the whole test."""
    split = arms or [TrafficArm(version=baseline, weight=50.0), TrafficArm(version=candidate, weight=50.0)]
    total = sum(a.weight for a in split)
    if not math.isclose(total, 100.0, abs_tol=WEIGHT_TOLERANCE):
        raise ValueError(f"A/B weights must sum to 100, not {total:g}")
    return next_table(current, [_arm(a.version, a.weight, deployments, sticky=True) for a in split])


def shadow_table(
    current: RouteTable, baseline: int, candidate: int, deployments: dict[int, str]
) -> RouteTable:
    """The baseline answers everything; the candidate gets a copy of every request."""
    return next_table(
        current, [_arm(baseline, 100.0, deployments), _arm(candidate, 0.0, deployments, mode="shadow")]
    )
