"""Reference profiles: the distribution of training data, computed once at registration and
compared against live traffic by the monitor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fleet_core.schemas import CategoricalProfile, Histogram, NumericProfile, ReferenceProfile

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_BINS = 10
SAMPLE_SIZE = 500
MAX_CATEGORIES = 200


def numeric_profile(
    values: Sequence[float] | np.ndarray, *, bins: int = DEFAULT_BINS, seed: int = 0
) -> NumericProfile:
    """Summary of a numeric column; bin edges are quantiles so each bin holds similar mass (PSI-friendly)."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    missing = int(arr.size - finite.size)
    if finite.size == 0:
        raise ValueError("a numeric profile needs at least one finite value")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        edges = np.array([finite[0] - 0.5, finite[0] + 0.5])
    counts, _ = np.histogram(finite, bins=edges)
    rng = np.random.default_rng(seed)
    sample = finite if finite.size <= SAMPLE_SIZE else rng.choice(finite, SAMPLE_SIZE, replace=False)
    return NumericProfile(
        count=int(finite.size),
        missing=missing,
        mean=float(finite.mean()),
        std=float(finite.std()),
        minimum=float(finite.min()),
        maximum=float(finite.max()),
        quantiles={str(q): float(np.quantile(finite, q)) for q in QUANTILES},
        histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts]),
        sample=[float(v) for v in sample],
    )


def categorical_profile(values: Sequence[Any] | np.ndarray) -> CategoricalProfile:
    """Frequencies of each category (the most common ``MAX_CATEGORIES``; the rest as ``__other__``)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    uniq, counts = np.unique(np.asarray([str(v) for v in present], dtype=object), return_counts=True)
    order = np.argsort(-counts)
    freqs = {str(uniq[i]): int(counts[i]) for i in order[:MAX_CATEGORIES]}
    rest = int(counts[order[MAX_CATEGORIES:]].sum()) if len(order) > MAX_CATEGORIES else 0
    if rest:
        freqs["__other__"] = rest
    return CategoricalProfile(count=len(present), missing=len(values) - len(present), frequencies=freqs)


def column_profile(
    values: Sequence[Any] | np.ndarray, *, categorical: bool
) -> NumericProfile | CategoricalProfile:
    return categorical_profile(values) if categorical else numeric_profile(values)


def reference_profile(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    categorical: set[str] | None = None,
    predictions: Sequence[Any] | np.ndarray | None = None,
    predictions_categorical: bool = False,
    target: Sequence[Any] | np.ndarray | None = None,
) -> ReferenceProfile:
    """Profile every column, and optionally the model's predictions and the target."""
    categorical = categorical or set()
    features = {name: column_profile(vals, categorical=name in categorical) for name, vals in columns.items()}
    row_counts = {len(v) for v in columns.values()}
    if len(row_counts) > 1:
        raise ValueError(f"columns have different lengths: {sorted(row_counts)}")
    return ReferenceProfile(
        row_count=row_counts.pop() if row_counts else 0,
        features=features,
        prediction=column_profile(predictions, categorical=predictions_categorical)
        if predictions is not None
        else None,
        target=column_profile(target, categorical=predictions_categorical) if target is not None else None,
    )
