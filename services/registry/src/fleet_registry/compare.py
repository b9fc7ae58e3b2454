"""Versions side by side: what the registry knows of each (metrics, hyperparameters, recipe,
dataset, lineage, delivery checks) and how each differs from the first one named (the baseline):
metrics and hyperparameters that changed, the training data's rows and columns, and how far each
feature's training distribution moved (from the reference profiles)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from fleet_core.schemas import CategoricalProfile, NumericProfile, ReferenceProfile
from fleet_registry.delivery import VersionDelivery
from fleet_registry.entities import DatasetVersion, ModelVersion

MAX_COMPARED = 10


class ComparedVersion(BaseModel):
    version: int
    origin: str
    parent_version: int | None
    created_at: str
    created_by: str
    flavor: str
    task: str
    deploy_policy: str
    tags: list[str]
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    estimator: str | None = Field(description="The recipe's estimator or training function")
    target: str | None
    dataset: str | None = Field(description="name@version of the training data")
    dataset_rows: int | None
    dataset_columns: list[str]
    gate: str | None = Field(description="Its delivery state, when gated")
    checks: dict[str, str] = Field(description="check name -> passed, failed or skipped")
    evaluation: dict[str, float] = Field(description="The evaluation check's numbers (candidate, champion)")


class DatasetChange(BaseModel):
    version: int
    rows: int | None = Field(description="Rows more (or fewer) than the baseline's training data")
    columns_added: list[str]
    columns_removed: list[str]
    same_data: bool


class FeatureShift(BaseModel):
    """How far one feature's training distribution moved from the baseline's."""

    version: int
    feature: str
    kind: str
    mean_shift_std: float | None = Field(
        default=None, description="Numeric: (mean - baseline mean) / baseline std"
    )
    ks_statistic: float | None = Field(
        default=None, description="Numeric: two-sample KS on the profiles' samples"
    )
    psi: float | None = Field(default=None, description="Categorical: population stability index")


class Comparison(BaseModel):
    model: str
    baseline: int
    versions: list[ComparedVersion]
    metrics: dict[str, dict[str, float | None]] = Field(
        description="Metrics that differ: name -> {version: value}"
    )
    hyperparameters: dict[str, dict[str, Any]] = Field(description="Hyperparameters that differ")
    datasets: list[DatasetChange]
    profile_shift: list[FeatureShift]


def _differing(values: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = sorted({k for v in values.values() for k in v})
    out = {}
    for key in keys:
        row = {str(n): v.get(key) for n, v in values.items()}
        if len({repr(x) for x in row.values()}) > 1:
            out[key] = row
    return out


def _psi(a: dict[str, int], b: dict[str, int]) -> float:
    cats = sorted(set(a) | set(b))
    pa = np.array([a.get(c, 0) for c in cats], dtype=float) + 0.5
    pb = np.array([b.get(c, 0) for c in cats], dtype=float) + 0.5
    pa, pb = pa / pa.sum(), pb / pb.sum()
    return float(np.sum((pb - pa) * np.log(pb / pa)))


def profile_shift(
    version: int, base: ReferenceProfile | None, other: ReferenceProfile | None
) -> list[FeatureShift]:
    if base is None or other is None:
        return []
    shifts = []
    for name, theirs in base.features.items():
        mine = other.features.get(name)
        if isinstance(theirs, NumericProfile) and isinstance(mine, NumericProfile):
            ks = (
                stats.ks_2samp(theirs.sample, mine.sample).statistic
                if theirs.sample and mine.sample
                else None
            )
            spread = theirs.std if theirs.std > 0 else math.nan
            moved = (mine.mean - theirs.mean) / spread
            shifts.append(
                FeatureShift(
                    version=version,
                    feature=name,
                    kind="numeric",
                    mean_shift_std=None if math.isnan(moved) else round(moved, 4),
                    ks_statistic=None if ks is None else round(float(ks), 4),
                )
            )
        elif isinstance(theirs, CategoricalProfile) and isinstance(mine, CategoricalProfile):
            shifts.append(
                FeatureShift(
                    version=version,
                    feature=name,
                    kind="categorical",
                    psi=round(_psi(theirs.frequencies, mine.frequencies), 4),
                )
            )
    return shifts


def compare(
    model: str,
    versions: list[ModelVersion],
    datasets: dict[int, DatasetVersion | None],
    deliveries: dict[int, VersionDelivery],
) -> Comparison:
    """``versions`` in the order asked; the first is the baseline."""
    compared = []
    for v in versions:
        data = datasets.get(v.version)
        delivery = deliveries[v.version]
        evaluation = next((c for c in delivery.checks if c.name == "evaluation"), None)
        compared.append(
            ComparedVersion(
                version=v.version,
                origin=v.origin,
                parent_version=v.parent_version,
                created_at=v.created_at.isoformat(),
                created_by=v.created_by,
                flavor=v.flavor,
                task=v.task,
                deploy_policy=v.deploy_policy,
                tags=v.tags,
                metrics=v.metrics,
                hyperparameters=v.hyperparameters,
                estimator=(v.recipe.estimator or v.recipe.function) if v.recipe else None,
                target=v.recipe.target if v.recipe else None,
                dataset=f"{data.dataset}@{data.version}" if data else None,
                dataset_rows=data.row_count if data else None,
                dataset_columns=sorted(data.schema_) if data else [],
                gate=delivery.state,
                checks={c.name: c.status for c in delivery.checks},
                evaluation=evaluation.measured if evaluation else {},
            )
        )
    base, base_data = versions[0], datasets.get(versions[0].version)
    changes = []
    for v in versions[1:]:
        data = datasets.get(v.version)
        if base_data is None or data is None:
            continue
        changes.append(
            DatasetChange(
                version=v.version,
                rows=data.row_count - base_data.row_count,
                columns_added=sorted(set(data.schema_) - set(base_data.schema_)),
                columns_removed=sorted(set(base_data.schema_) - set(data.schema_)),
                same_data=(data.dataset, data.content_hash) == (base_data.dataset, base_data.content_hash),
            )
        )
    return Comparison(
        model=model,
        baseline=base.version,
        versions=compared,
        metrics=_differing({v.version: v.metrics for v in versions}),
        hyperparameters=_differing({v.version: v.hyperparameters for v in versions}),
        datasets=changes,
        profile_shift=[
            s
            for v in versions[1:]
            for s in profile_shift(v.version, base.reference_profile, v.reference_profile)
        ],
    )
