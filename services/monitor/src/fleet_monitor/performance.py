"""Labelled performance: predictions joined with feedback, and concept drift against the
metrics a version was registered with.

The gateway logs a prediction with its request id; feedback arrives later with the labels of
the same rows. ``PredictionCache`` holds recent predictions (bounded, oldest evicted) so the
two can meet in either order. ``PerformanceWindow`` gathers joined rows of one version and
scores them: accuracy, precision, recall and F1 (macro) for classifiers, MAE and RMSE for
regressors. Concept drift is a drop against the registered metric that is both larger than the
tolerance and, for accuracy, significant (one-sided binomial test).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support

from fleet_core.events import FeatureDrift


@dataclass(frozen=True, slots=True)
class ConceptThresholds:
    window_rows: int = 200
    """Labelled rows per performance window."""
    accuracy_drop: float = 0.05
    """Absolute drop in accuracy (or F1) below the registered value that counts as concept drift."""
    error_increase: float = 0.25
    """Relative rise of MAE or RMSE above the registered value that counts as concept drift."""
    alpha: float = 0.01


@dataclass(frozen=True, slots=True)
class CachedPrediction:
    model: str
    version: int
    arm: str
    outputs: list[Any]


class PredictionCache:
    """Recent predictions by request id, and feedback that arrived before its prediction."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._predictions: OrderedDict[str, CachedPrediction] = OrderedDict()
        self._early: OrderedDict[str, list[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._predictions)

    def put(self, request_id: str, prediction: CachedPrediction) -> list[Any] | None:
        """Remember a prediction; returns labels that were waiting for it, if any."""
        waiting = self._early.pop(request_id, None)
        if waiting is not None:
            return waiting
        self._predictions[request_id] = prediction
        if len(self._predictions) > self.capacity:
            self._predictions.popitem(last=False)
        return None

    def take(self, request_id: str, labels: list[Any]) -> CachedPrediction | None:
        """The prediction for a request id; unknown ids keep their labels for a later prediction."""
        found = self._predictions.pop(request_id, None)
        if found is None:
            self._early[request_id] = labels
            if len(self._early) > self.capacity // 10:
                self._early.popitem(last=False)
        return found


def scalar_output(value: Any) -> Any:
    """A one-element list or one-key dict counts as its single value (how models return scalars)."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


@dataclass(slots=True)
class PerformanceWindow:
    """Joined (label, prediction) pairs of one version."""

    task: str
    labels: list[Any] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)

    def add(self, labels: list[Any], outputs: list[Any]) -> int:
        pairs = [
            (scalar_output(y), scalar_output(p))
            for y, p in zip(labels, outputs, strict=False)
            if y is not None
        ]
        for y, p in pairs:
            self.labels.append(y)
            self.predictions.append(p)
        return len(pairs)

    def __len__(self) -> int:
        return len(self.labels)

    def metrics(self) -> dict[str, float]:
        if not self.labels:
            return {}
        if self.task == "regression":
            y = np.asarray([float(v) for v in self.labels])
            p = np.asarray([float(v) for v in self.predictions])
            err = p - y
            return {"mae": float(np.abs(err).mean()), "rmse": float(math.sqrt((err**2).mean()))}
        y = [str(v) for v in self.labels]
        p = [str(v) for v in self.predictions]
        precision, recall, f1, _ = precision_recall_fscore_support(y, p, average="macro", zero_division=0)
        accuracy = sum(a == b for a, b in zip(y, p, strict=True)) / len(y)
        return {"accuracy": accuracy, "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def concept_scores(
    live: dict[str, float], registered: dict[str, float], rows: int, thresholds: ConceptThresholds
) -> list[FeatureDrift]:
    """One score per registered metric that the live window also measures."""
    scores: list[FeatureDrift] = []
    for metric in ("accuracy", "f1"):
        if metric in live and metric in registered:
            floor = registered[metric] - thresholds.accuracy_drop
            p_value: float | None = None
            drifted = live[metric] < floor
            if metric == "accuracy" and 0 < registered[metric] < 1:
                correct = round(live[metric] * rows)
                p_value = float(stats.binomtest(correct, rows, registered[metric], alternative="less").pvalue)
                drifted = drifted and p_value < thresholds.alpha
            scores.append(
                FeatureDrift(
                    feature=metric,
                    test="performance",
                    statistic=live[metric],
                    p_value=p_value,
                    threshold=floor,
                    drifted=drifted,
                )
            )
    for metric in ("mae", "rmse"):
        if metric in live and metric in registered:
            ceiling = registered[metric] * (1 + thresholds.error_increase)
            scores.append(
                FeatureDrift(
                    feature=metric,
                    test="performance",
                    statistic=live[metric],
                    threshold=ceiling,
                    drifted=live[metric] > ceiling,
                )
            )
    return scores


class ServedIndex:
    """Which version answered a request id, and which one a routing key was last routed to, per
    model (primary arms only): what a business outcome is joined to. Bounded: the oldest go first
    (at ``capacity`` entries each, some 15 MB)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._requests: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._keys: OrderedDict[tuple[str, str], int] = OrderedDict()

    def add(self, model: str, request_id: str, routing_key: str | None, version: int) -> None:
        for index, key in ((self._requests, request_id), (self._keys, routing_key)):
            if key is None:
                continue
            index[(model, key)] = version
            index.move_to_end((model, key))
            if len(index) > self.capacity:
                index.popitem(last=False)

    def by_request(self, model: str, request_id: str) -> int | None:
        return self._requests.get((model, request_id))

    def by_key(self, model: str, routing_key: str) -> int | None:
        return self._keys.get((model, routing_key))
