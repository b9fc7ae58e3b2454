"""Labelled performance: predictions and labels meet in either order; concept drift is a real,
significant drop against the registered metrics."""

from __future__ import annotations

from fleet_monitor.performance import (
    CachedPrediction,
    ConceptThresholds,
    PerformanceWindow,
    PredictionCache,
    concept_scores,
)


def test_feedback_joins_whether_it_arrives_before_or_after_the_prediction() -> None:
    cache = PredictionCache()
    assert cache.put("a", CachedPrediction("m", 1, "primary", [1])) is None
    assert cache.take("a", [1]) == CachedPrediction("m", 1, "primary", [1])
    assert cache.take("b", [0]) is None  # early feedback waits
    assert cache.put("b", CachedPrediction("m", 1, "primary", [1])) == [0]


def test_classification_metrics() -> None:
    window = PerformanceWindow(task="classification")
    window.add([1, 1, 0, 0], [1, 0, 0, 0])
    metrics = window.metrics()
    assert metrics["accuracy"] == 0.75
    assert 0 < metrics["f1"] < 1


def test_a_significant_accuracy_drop_is_concept_drift_and_a_small_one_is_not() -> None:
    registered = {"accuracy": 0.95}
    bad = concept_scores({"accuracy": 0.70}, registered, 200, ConceptThresholds())
    assert bad[0].drifted and bad[0].p_value is not None and bad[0].p_value < 0.01
    fine = concept_scores({"accuracy": 0.93}, registered, 200, ConceptThresholds())
    assert not fine[0].drifted


def test_regression_error_rising_past_the_tolerance_is_concept_drift() -> None:
    window = PerformanceWindow(task="regression")
    window.add([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    live = window.metrics()
    assert live["mae"] == 0.5
    scores = concept_scores(live, {"mae": 0.3}, 3, ConceptThresholds())
    assert scores[0].drifted
