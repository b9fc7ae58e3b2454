"""Drift statistics against a reference profile: shifted features are named, unshifted traffic
stays quiet, and one shift is one episode."""

from __future__ import annotations

from fleet_monitor.drift import PREDICTION, DriftEpisodes, DriftThresholds, DriftWindow
from support.monitor import FEATURES, Population, registered


def _window(rows: list[dict], outputs: list | None = None) -> DriftWindow:
    window = DriftWindow(opened_at=0.0)
    window.add(rows, outputs, [*FEATURES, "channel"])
    return window


def test_a_shifted_numeric_feature_is_named_with_psi_and_ks() -> None:
    profile = registered("credit").reference_profile
    assert profile is not None
    report = _window(Population(1).rows(500, shift={"income": 1.0})).evaluate(profile, DriftThresholds())
    assert report.drifted_features == ["income"]
    income = {s.test: s for s in report.data if s.feature == "income"}
    assert income["psi"].statistic > 0.2 and income["psi"].drifted
    assert income["ks"].p_value is not None and income["ks"].p_value < 1e-6


def test_a_shifted_category_mix_is_caught_by_chi_square() -> None:
    profile = registered("credit").reference_profile
    assert profile is not None
    report = _window(Population(2).rows(500, channel_p=(0.1, 0.2, 0.7))).evaluate(profile, DriftThresholds())
    assert report.drifted_features == ["channel"]
    assert {s.test for s in report.data if s.feature == "channel"} == {"chi2", "psi"}


def test_unshifted_traffic_has_a_false_positive_rate_below_five_percent() -> None:
    profile = registered("credit").reference_profile
    assert profile is not None
    population = Population(3)
    windows = 40
    drifted = sum(
        bool(_window(population.rows(500)).evaluate(profile, DriftThresholds()).drifted_features)
        for _ in range(windows)
    )
    assert drifted / windows <= 0.05


def test_prediction_drift_is_scored_on_the_outputs() -> None:
    profile = registered("credit").reference_profile
    assert profile is not None
    rows = Population(4).rows(500)
    report = _window(rows, [1] * len(rows)).evaluate(profile, DriftThresholds())
    assert report.prediction_drifted
    assert {s.feature for s in report.prediction} == {PREDICTION}


def test_a_window_closes_on_rows_or_on_time_with_enough_rows() -> None:
    thresholds = DriftThresholds(window_rows=100, window_s=60, min_rows=20)
    window = DriftWindow(opened_at=0.0)
    window.add(Population(5).rows(30), None, list(FEATURES))
    assert not window.ready(10, thresholds)
    assert window.ready(61, thresholds)
    window.add(Population(5).rows(70), None, list(FEATURES))
    assert window.ready(1, thresholds)


def test_one_sustained_shift_is_one_episode_and_clean_windows_end_it() -> None:
    episodes = DriftEpisodes()
    seen = [
        episodes.observe("m", 1, "data", drifted, clear_windows=2)
        for drifted in (True, True, True, False, True, False, False, False)
    ]
    assert seen == ["started", None, None, None, None, None, "ended", None]
