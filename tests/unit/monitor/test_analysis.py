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


def outcomes(kpi: str, values: list[float]) -> ArmSample:
    sample = ArmSample()
    for value in values:
        sample.record_outcome(kpi, value)
    return sample


def test_an_ab_test_on_a_conversion_kpi_finds_the_arm_that_converts_more() -> None:
    rng = np.random.default_rng(3)
    better = outcomes("conversion", [float(v) for v in rng.random(400) < 0.30])
    worse = outcomes("conversion", [float(v) for v in rng.random(400) < 0.12])
    finding = analyse_ab(better, worse, "conversion", POLICY)
    assert finding.verdict == "pass" and "proportions test" in finding.reason, finding.reason
    assert analyse_ab(worse, better, "conversion", POLICY).verdict == "fail"
    metrics = better.metrics("conversion")
    assert metrics.kpi_samples == 400 and metrics.kpi is not None
    assert metrics.kpi_low is not None and metrics.kpi_high is not None
    assert (
        metrics.kpi_low < metrics.kpi < metrics.kpi_high
        and 0.2 < metrics.kpi_low < 0.3 < metrics.kpi_high < 0.4
    )


def test_an_ab_test_on_revenue_compares_means_and_waits_for_enough_outcomes() -> None:
    rng = np.random.default_rng(4)
    high = outcomes("revenue", list(rng.normal(52, 10, 300)))
    low = outcomes("revenue", list(rng.normal(47, 10, 300)))
    finding = analyse_ab(high, low, "revenue", POLICY)
    assert finding.verdict == "pass" and "means test" in finding.reason, finding.reason
    few = analyse_ab(outcomes("revenue", [50.0] * 10), low, "revenue", POLICY)
    assert few.verdict == "inconclusive" and "10 and 300 'revenue' outcomes" in few.reason
    tie = analyse_ab(
        outcomes("revenue", list(rng.normal(50, 10, 300))),
        outcomes("revenue", list(rng.normal(50, 10, 300))),
        "revenue",
        POLICY,
    )
    assert tie.verdict == "inconclusive"
    assert analyse_ab(high, low, "signups", POLICY).verdict == "inconclusive"  # no outcomes for that KPI
