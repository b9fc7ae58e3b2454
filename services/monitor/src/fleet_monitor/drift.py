"""Drift statistics: live windows against a version's reference profile.

Numeric features get PSI over the reference's quantile bins and a two-sample KS test against the
reference sample; categorical features a chi-square test against the reference frequencies, with
PSI as the effect size. A feature drifts only when both agree: the test is significant (alpha
Bonferroni-corrected over the features tested) *and* the effect is large (PSI at or above its
threshold). The first keeps big windows from flagging trivial shifts, the second keeps small
windows from flagging noise; together they keep the false-positive rate of an unshifted model far
below 5 % a window.

Drift is reported per episode: ``DriftEpisodes`` starts an episode on the first drifted window and
ends it after ``clear_windows`` clean ones in a row, so one shift raises one event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from fleet_core.events import FeatureDrift
from fleet_core.schemas import CategoricalProfile, NumericProfile, ReferenceProfile
from fleet_monitor.performance import scalar_output

EPS = 1e-4
PREDICTION = "prediction"
"""The feature name of a model's predictions in prediction-drift scores."""


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a window counts as drifted (per model; defaults suit most tabular models)."""

    psi: float = 0.2
    """PSI at or above this is a material shift (0.1 slight, 0.2 significant by convention)."""
    alpha: float = 0.01
    """Family-wise significance level for the KS and chi-square tests of one window."""
    window_rows: int = 500
    """A drift window closes after this many input rows ..."""
    window_s: float = 300.0
    """... or after this long, if it holds at least ``min_rows``."""
    min_rows: int = 100
    clear_windows: int = 2
    """Clean windows in a row that end a drift episode."""


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = expected / max(expected.sum(), 1)
    a = actual / max(actual.sum(), 1)
    e = np.clip(e, EPS, None)
    a = np.clip(a, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_counts(profile: NumericProfile, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the reference bins; values outside the edges go to the end bins."""
    inner = np.asarray(profile.histogram.edges[1:-1], dtype=float)
    idx = np.searchsorted(inner, values, side="right")
    return np.bincount(idx, minlength=len(profile.histogram.counts)).astype(float)


def score_numeric(
    name: str, profile: NumericProfile, values: np.ndarray, thresholds: DriftThresholds, alpha: float
) -> list[FeatureDrift]:
    values = values[np.isfinite(values)]
    psi_value = psi(np.asarray(profile.histogram.counts, dtype=float), numeric_counts(profile, values))
    large = psi_value >= thresholds.psi
    scores = [
        FeatureDrift(feature=name, test="psi", statistic=psi_value, threshold=thresholds.psi, drifted=large)
    ]
    if profile.sample and values.size:
        ks = stats.ks_2samp(values, np.asarray(profile.sample, dtype=float))
        p = float(ks.pvalue)
        scores.append(
            FeatureDrift(
                feature=name,
                test="ks",
                statistic=float(ks.statistic),
                p_value=p,
                threshold=alpha,
                drifted=large and p < alpha,
            )
        )
        scores[0] = scores[0].model_copy(update={"drifted": large and p < alpha})
    return scores


def score_categorical(
    name: str, profile: CategoricalProfile, values: list[Any], thresholds: DriftThresholds, alpha: float
) -> list[FeatureDrift]:
    categories = list(profile.frequencies)
    index = {c: i for i, c in enumerate(categories)}
    other = index.get("__other__")
    live = np.zeros(len(categories) + (1 if other is None else 0), dtype=float)
    for value, count in Counter(str(v) for v in values if v is not None).items():
        i = index.get(value)
        live[i if i is not None else (other if other is not None else len(categories))] += count
    ref = np.asarray(
        [profile.frequencies[c] for c in categories] + ([0] if other is None else []), dtype=float
    )
    psi_value = psi(ref, live)
    expected = np.clip(ref / max(ref.sum(), 1), EPS, None)
    expected = expected / expected.sum() * live.sum()
    chi = stats.chisquare(live, expected) if live.sum() else None
    p = float(chi.pvalue) if chi is not None else 1.0
    drifted = psi_value >= thresholds.psi and p < alpha
    return [
        FeatureDrift(
            feature=name,
            test="chi2",
            statistic=float(chi.statistic) if chi is not None else 0.0,
            p_value=p,
            threshold=alpha,
            drifted=drifted,
        ),
        FeatureDrift(
            feature=name, test="psi", statistic=psi_value, threshold=thresholds.psi, drifted=drifted
        ),
    ]


@dataclass(slots=True)
class DriftReport:
    """One closed window's verdict, for data (inputs) and for predictions."""

    rows: int
    data: list[FeatureDrift]
    prediction: list[FeatureDrift]

    @property
    def drifted_features(self) -> list[str]:
        return sorted({s.feature for s in self.data if s.drifted})

    @property
    def prediction_drifted(self) -> bool:
        return any(s.drifted for s in self.prediction)


@dataclass(slots=True)
class DriftWindow:
    """Input rows and predictions of one version since its last drift window closed."""

    opened_at: float
    columns: dict[str, list[Any]] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)
    rows: int = 0

    def add(self, rows: list[dict[str, Any]], outputs: list[Any] | None, features: list[str]) -> None:
        for name in features:
            column = self.columns.setdefault(name, [])
            column.extend(row.get(name) for row in rows)
        if outputs is not None and len(outputs) == len(rows):
            self.predictions.extend(outputs)
        self.rows += len(rows)

    def ready(self, now: float, thresholds: DriftThresholds) -> bool:
        if self.rows >= thresholds.window_rows:
            return True
        return self.rows >= thresholds.min_rows and now - self.opened_at >= thresholds.window_s

    def evaluate(self, profile: ReferenceProfile, thresholds: DriftThresholds) -> DriftReport:
        tested = [n for n in self.columns if n in profile.features]
        alpha = thresholds.alpha / max(len(tested), 1)
        data: list[FeatureDrift] = []
        for name in tested:
            data.extend(score_column(name, profile.features[name], self.columns[name], thresholds, alpha))
        prediction: list[FeatureDrift] = []
        if profile.prediction is not None and self.predictions:
            prediction = score_column(
                PREDICTION, profile.prediction, _scalars(self.predictions), thresholds, thresholds.alpha
            )
        return DriftReport(rows=self.rows, data=data, prediction=prediction)


def score_column(
    name: str,
    profile: NumericProfile | CategoricalProfile,
    values: list[Any],
    thresholds: DriftThresholds,
    alpha: float,
) -> list[FeatureDrift]:
    if isinstance(profile, CategoricalProfile):
        return score_categorical(name, profile, values, thresholds, alpha)
    numbers = np.asarray([_as_float(v) for v in values], dtype=float)
    return score_numeric(name, profile, numbers, thresholds, alpha)


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _scalars(outputs: list[Any]) -> list[Any]:
    return [scalar_output(v) for v in outputs]


class DriftEpisodes:
    """Hysteresis: one episode per sustained drift, per (model, version, kind)."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, int, str], int] = {}  # key -> clean windows seen since drift

    def active(self, model: str, version: int, kind: str) -> bool:
        return (model, version, kind) in self._active

    def observe(self, model: str, version: int, kind: str, drifted: bool, clear_windows: int) -> str | None:
        """``"started"`` on the first drifted window, ``"ended"`` after enough clean ones, else None."""
        key = (model, version, kind)
        if drifted:
            started = key not in self._active
            self._active[key] = 0
            return "started" if started else None
        if key not in self._active:
            return None
        self._active[key] += 1
        if self._active[key] >= clear_windows:
            del self._active[key]
            return "ended"
        return None

    def restore(self, model: str, version: int, kind: str) -> None:
        self._active[(model, version, kind)] = 0
