"""Rollout verdicts: a canary is inconclusive until it has traffic, fails when it errors or slows
down, passes otherwise; an A/B test finds a known winner and stays inconclusive on a tie."""

from __future__ import annotations

import numpy as np

from fleet_monitor.analysis import AnalysisPolicy, ArmSample, analyse_ab, analyse_canary


def arm(
    requests: int, errors: int = 0, latency: float = 10.0, correct: int = 0, labelled: int = 0
) -> ArmSample:
    sample = ArmSample()
    for i in range(requests):
        sample.record_request(latency, i < errors)
    for i in range(labelled):
        sample.record_label(1, 1 if i < correct else 0, "classification")
    return sample


POLICY = AnalysisPolicy()


def test_a_canary_without_enough_traffic_is_inconclusive() -> None:
    finding = analyse_canary(arm(10), arm(500), POLICY)
    assert finding.verdict == "inconclusive" and "10 of the 50" in finding.reason


def test_a_healthy_canary_passes() -> None:
    assert analyse_canary(arm(100, errors=1), arm(900, errors=9), POLICY).verdict == "pass"


def test_a_canary_with_more_errors_fails_with_the_numbers() -> None:
    finding = analyse_canary(arm(100, errors=20), arm(900, errors=9), POLICY)
    assert finding.verdict == "fail" and "20.0%" in finding.reason
    assert finding.p_value is not None and finding.p_value < 0.05


def test_a_slower_canary_fails_on_p95() -> None:
    finding = analyse_canary(arm(100, latency=80.0), arm(900, latency=10.0), POLICY)
    assert finding.verdict == "fail" and "p95" in finding.reason


def test_ab_finds_the_known_winner_on_accuracy() -> None:
    rng = np.random.default_rng(0)
    better, worse = ArmSample(), ArmSample()
    for _ in range(600):
        better.record_label(1, int(rng.random() < 0.92), "classification")
        worse.record_label(1, int(rng.random() < 0.80), "classification")
    win = analyse_ab(better, worse, "accuracy", POLICY)
    assert win.verdict == "pass" and win.p_value is not None and win.p_value < 0.001
    assert analyse_ab(worse, better, "accuracy", POLICY).verdict == "fail"


def test_ab_with_two_equal_arms_is_inconclusive() -> None:
    rng = np.random.default_rng(1)
    a, b = ArmSample(), ArmSample()
    for _ in range(400):
        a.record_label(1, int(rng.random() < 0.9), "classification")
        b.record_label(1, int(rng.random() < 0.9), "classification")
    finding = analyse_ab(a, b, "accuracy", POLICY)
    assert finding.verdict == "inconclusive" and "no significant difference" in finding.reason


def test_ab_on_regression_error_uses_welch() -> None:
    rng = np.random.default_rng(2)
    good, bad = ArmSample(), ArmSample()
    for _ in range(200):
        y = float(rng.normal())
        good.record_label(y, y + float(rng.normal(0, 0.5)), "regression")
        bad.record_label(y, y + float(rng.normal(0, 1.5)), "regression")
    assert analyse_ab(good, bad, "mae", POLICY).verdict == "pass"
