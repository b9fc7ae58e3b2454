"""The evaluation gate: champion and candidate scored on the same holdout; the candidate replaces
the champion only if it is better by at least ``min_improvement`` on the primary metric."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fleet_sdk.sklearn import compute_metrics

PRIMARY = {"classification": ("accuracy", True), "regression": ("rmse", False)}
"""The metric the gate decides on per task, and whether higher is better."""


@dataclass(frozen=True)
class GateResult:
    accepted: bool
    metric: str
    champion: dict[str, float]
    candidate: dict[str, float]
    reasons: list[str] = field(default_factory=list)


def judge(
    champion: Any,
    candidate: Any,
    holdout: pd.DataFrame,
    *,
    target: str,
    task: str,
    min_improvement: float = 0.0,
) -> GateResult:
    """Score both on ``holdout`` and decide. A candidate that cannot predict fails the gate."""
    if task not in PRIMARY:
        raise ValueError(f"the gate needs a classification or regression task, not {task!r}")
    metric, higher_is_better = PRIMARY[task]
    X, y = holdout.drop(columns=[target]), holdout[target]
    champion_metrics = compute_metrics(champion, X, y, task)
    try:
        candidate_metrics = compute_metrics(candidate, X, y, task)
    except Exception as exc:
        return GateResult(
            False, metric, champion_metrics, {}, [f"the candidate failed on the holdout: {exc}"]
        )
    old, new = champion_metrics[metric], candidate_metrics[metric]
    gain = (new - old) if higher_is_better else (old - new)
    numbers = f"{metric} {new:.4f} against the champion's {old:.4f} on {len(holdout)} holdout rows"
    if gain > min_improvement:
        return GateResult(True, metric, champion_metrics, candidate_metrics, [f"better: {numbers}"])
    if gain < 0:
        reason = f"worse: {numbers}"
    elif gain == 0:
        reason = f"no better: {numbers}"
    else:
        reason = f"not better by the {min_improvement:g} required: {numbers}"
    return GateResult(False, metric, champion_metrics, candidate_metrics, [reason])
