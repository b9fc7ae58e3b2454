"""The delivery gate's checks: what a version registered with ``deploy_policy="gated"`` must pass
before it takes traffic (docs/delivery.md).

On ``model.registered`` (a notification: the version, its policy and its model's gate are re-read
from the registry) the checker loads the candidate exactly as a serving replica does (sha256
verified, skops only with the serving allow-list) and runs:

- ``signature``: its inputs and outputs keep the champion's names and types (the version that
  serves most traffic, per the deployer), unless it carries the ``breaking-change`` tag;
- ``smoke``: it predicts its own example input, one answer per row;
- ``evaluation``: champion and candidate scored on the same holdout (the gate's registered dataset,
  or the newest labelled traffic) on the gate's primary metric, better by ``min_improvement``;
- ``latency``: p95 of one-row predictions on a warm copy, within ``latency_budget_ms``.

A check that has nothing to work on (no champion yet, no budget set) is ``skipped`` with the
reason; a check that cannot run because the candidate misbehaves is ``failed``. The outcomes go to
the registry (``PUT .../checks``, with the ``delivery:checks`` scope), which works out the state and
announces ``version.checked``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fleet_core.errors import FleetError, NotFound
from fleet_core.log import get_logger
from fleet_core.schemas import CheckResult, DeliveryGate, Signature
from fleet_core.serving import ModelSpec
from fleet_core.settings import FleetSettings
from fleet_retrainer.dataset import labelled_frame
from fleet_retrainer.gate import PRIMARY
from fleet_retrainer.platform import Fleet, spec_of
from fleet_sdk.sklearn import prediction_metrics

log = get_logger(__name__)
BREAKING_TAG = "breaking-change"
"""A version tagged so declares its signature change on purpose: the signature check lets it pass."""
LOWER_IS_BETTER = ("rmse", "mae", "mse", "log_loss", "error", "loss")
LATENCY_CALLS = 50
"""One-row predictions timed for the latency check (after one warm-up call)."""


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def signature_check(
    candidate: Signature, champion: Signature | None, champion_version: int | None, tags: Sequence[str]
) -> CheckResult:
    if champion is None:
        return CheckResult(
            name="signature", status="skipped", detail="no version serves yet: nothing to match"
        )
    problems: list[str] = []
    for side in ("inputs", "outputs"):
        theirs = {f.name: f.type for f in getattr(champion, side)}
        mine = {f.name: f.type for f in getattr(candidate, side)}
        problems += [f"{side[:-1]} {n!r} is gone" for n in theirs if n not in mine]
        problems += [
            f"{side[:-1]} {n!r} is {mine[n]}, was {t}"
            for n, t in theirs.items()
            if n in mine and mine[n] != t
        ]
        if side == "inputs":
            problems += [f"new required input {n!r}" for n in mine if n not in theirs]
    if not problems:
        return CheckResult(
            name="signature", status="passed", detail=f"the same inputs and outputs as v{champion_version}"
        )
    changes = "; ".join(problems)
    if BREAKING_TAG in tags:
        return CheckResult(
            name="signature",
            status="passed",
            detail=f"declared a breaking change (tag {BREAKING_TAG!r}) against v{champion_version}: "
            f"{changes}",
        )
    return CheckResult(
        name="signature",
        status="failed",
        detail=f"incompatible with v{champion_version}, which serves now: {changes} "
        f"(tag the version {BREAKING_TAG!r} if this is on purpose)",
    )


def smoke_check(runtime: Any, example: list[dict[str, Any]] | None) -> CheckResult:
    if not example:
        return CheckResult(
            name="smoke",
            status="failed",
            detail="the version has no example_input to predict: register it with one",
        )
    try:
        answers = runtime.predict(example)
    except Exception as exc:
        return CheckResult(
            name="smoke", status="failed", detail=f"predicting its example input failed: {exc}"
        )
    return CheckResult(
        name="smoke",
        status="passed",
        detail=f"predicted its {len(example)} example row(s): {answers[:3]!r}"[:500],
    )


def latency_check(runtime: Any, example: list[dict[str, Any]] | None, budget_ms: float | None) -> CheckResult:
    if budget_ms is None:
        return CheckResult(name="latency", status="skipped", detail="the gate sets no latency budget")
    if not example:
        return CheckResult(name="latency", status="failed", detail="no example_input to time")
    row = example[:1]
    runtime.predict(row)  # warm
    took = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        runtime.predict(row)
        took.append((time.perf_counter() - start) * 1000)
    p50, p95 = float(np.percentile(took, 50)), float(np.percentile(took, 95))
    numbers = f"p95 {p95:.2f} ms (p50 {p50:.2f}) over {LATENCY_CALLS} one-row predictions"
    measured = {"p50_ms": round(p50, 4), "p95_ms": round(p95, 4)}
    if p95 <= budget_ms:
        return CheckResult(
            name="latency", status="passed", detail=f"{numbers}, budget {budget_ms:g} ms", measured=measured
        )
    return CheckResult(
        name="latency",
        status="failed",
        detail=f"{numbers} is over the budget of {budget_ms:g} ms",
        measured=measured,
    )


def evaluation_check(
    candidate: Any,
    champion: Any | None,
    champion_version: int | None,
    holdout: pd.DataFrame | None,
    *,
    where: str,
    target: str | None,
    task: str,
    gate: DeliveryGate,
) -> CheckResult:
    if champion is None:
        return CheckResult(
            name="evaluation", status="skipped", detail="no version serves yet: nothing to beat"
        )
    if task not in PRIMARY and gate.primary_metric is None:
        return CheckResult(
            name="evaluation",
            status="skipped",
            detail=f"task {task!r} has no default metric: set the gate's primary_metric",
        )
    if holdout is None or target is None:
        return CheckResult(name="evaluation", status="failed", detail=where)
    if len(holdout) < gate.min_holdout_rows:
        return CheckResult(
            name="evaluation",
            status="failed",
            detail=f"{where} has {len(holdout)} labelled rows; the gate needs {gate.min_holdout_rows}",
        )
    metric = gate.primary_metric or PRIMARY[task][0]
    higher = gate.higher_is_better if gate.higher_is_better is not None else not _lower_is_better(metric)
    features = [c for c in holdout.columns if c != target]
    rows = holdout[features].to_dict("records")
    y = holdout[target].to_numpy()
    try:
        theirs = prediction_metrics(y, np.asarray(champion.predict(rows)), task)
    except Exception as exc:
        return CheckResult(
            name="evaluation", status="failed", detail=f"the champion failed on {where}: {exc}"
        )
    try:
        mine = prediction_metrics(y, np.asarray(candidate.predict(rows)), task)
    except Exception as exc:
        return CheckResult(
            name="evaluation", status="failed", detail=f"the candidate failed on {where}: {exc}"
        )
    if metric not in mine:
        return CheckResult(
            name="evaluation",
            status="failed",
            detail=f"metric {metric!r} is not one of {sorted(mine)} for task {task!r}",
        )
    old, new = theirs[metric], mine[metric]
    gain = (new - old) if higher else (old - new)
    numbers = f"{metric} {new:.4f} against v{champion_version}'s {old:.4f} on {len(holdout)} rows of {where}"
    measured = {"candidate": new, "champion": old, "holdout_rows": float(len(holdout))}
    if gain >= gate.min_improvement or math.isclose(gain, gate.min_improvement, abs_tol=1e-12):
        verdict = "better" if gain > 0 else "as good"
        return CheckResult(
            name="evaluation", status="passed", detail=f"{verdict}: {numbers}", measured=measured
        )
    if gain < 0:
        reason = f"worse: {numbers}"
    else:
        reason = f"not better by the {gate.min_improvement:g} the gate requires: {numbers}"
    return CheckResult(name="evaluation", status="failed", detail=reason, measured=measured)


class VersionChecker:
    """Runs a gated version's checks and reports them to the registry."""

    def __init__(self, fleet: Fleet, settings: FleetSettings) -> None:
        self.fleet = fleet
        self.settings = settings

    async def _load(self, spec: ModelSpec) -> Any:
        from fleet_serving.loading import load_verified

        blob = await self.fleet.artifact(spec.model, spec.version)
        return await asyncio.to_thread(load_verified, spec, blob, self.settings)

    async def _holdout(
        self, model: str, version: dict[str, Any], gate: DeliveryGate
    ) -> tuple[pd.DataFrame | None, str, str | None]:
        """The holdout both versions are scored on, where it came from, and its label column."""
        recipe = version.get("recipe") or {}
        target = gate.target or recipe.get("target")
        if target is None:
            return None, "no label column: set the gate's target (or register with a recipe)", None
        features = [f["name"] for f in version["signature"]["inputs"]]
        if gate.holdout_dataset:
            number = gate.holdout_version or await self.fleet.latest_dataset_version(gate.holdout_dataset)
            where = f"dataset {gate.holdout_dataset} v{number}"
            try:
                frame = await self.fleet.dataset(gate.holdout_dataset, number)
            except Exception as exc:
                return None, f"cannot read {where}: {exc}", target
            missing = [c for c in (*features, target) if c not in frame.columns]
            if missing:
                return None, f"{where} lacks the columns {missing}", target
            return frame[[*features, target]], where, target
        where = "the newest labelled traffic"
        try:
            rows = await self.fleet.labelled_rows(model, limit=max(gate.min_holdout_rows, 5000))
        except Exception as exc:
            return None, f"cannot read {where} from the monitor: {exc}", target
        return labelled_frame(rows, features, target), where, target

    async def check(self, model: str, number: int) -> dict[str, Any] | None:
        """Run and report the checks of ``model`` v``number``; None when it is not gated or was
        checked already (a redelivered event)."""
        version = await self.fleet.version(model, number)
        if version.get("deploy_policy") != "gated":
            return None
        delivery = await self.fleet.delivery(model, number)
        if delivery["checks"]:
            return None
        gate = DeliveryGate.model_validate(delivery["gate"])
        results = await self._run(model, version, gate)
        log.info(
            "gated version checked",
            model=model,
            version=number,
            checks={c.name: c.status for c in results},
        )
        return await self.fleet.record_checks(model, number, results)

    async def _run(self, model: str, version: dict[str, Any], gate: DeliveryGate) -> list[CheckResult]:
        spec = spec_of(version)
        try:
            candidate = await self._load(spec)
        except FleetError as exc:
            return [
                CheckResult(name="smoke", status="failed", detail=f"the version does not load: {exc.detail}")
            ]
        champion_number = await self.fleet.serving_version(model, exclude=spec.version)
        champion_version = champion = None
        if champion_number is not None:
            try:
                champion_version = await self.fleet.version(model, champion_number)
                champion = await self._load(spec_of(champion_version))
            except (FleetError, NotFound) as exc:
                log.warning(
                    "the champion cannot be loaded", model=model, version=champion_number, error=str(exc)
                )
                champion_number = None
        example = version.get("example_input")
        results = [
            signature_check(
                spec.signature,
                Signature.model_validate(champion_version["signature"]) if champion_version else None,
                champion_number,
                version.get("tags") or [],
            ),
            await asyncio.to_thread(smoke_check, candidate, example),
        ]
        holdout, where, target = (None, "", None)
        if champion is not None:
            holdout, where, target = await self._holdout(model, version, gate)
        results.append(
            await asyncio.to_thread(
                evaluation_check,
                candidate,
                champion,
                champion_number,
                holdout,
                where=where,
                target=target,
                task=version["task"],
                gate=gate,
            )
        )
        results.append(await asyncio.to_thread(latency_check, candidate, example, gate.latency_budget_ms))
        return results
