"""FLEET_METRICS_MODEL_SERIES: parsing, and which models keep their own series as traffic moves."""

from __future__ import annotations

import pytest

from fleet_core.model_series import ModelSeriesPolicy, ModelSeriesSelector


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("all", ModelSeriesPolicy("all")),
        ("team", ModelSeriesPolicy("team")),
        ("top:50", ModelSeriesPolicy("top", 50)),
        (" TOP:1 ", ModelSeriesPolicy("top", 1)),
    ],
)
def test_the_setting_parses(text: str, policy: ModelSeriesPolicy) -> None:
    assert ModelSeriesPolicy.parse(text) == policy
    assert ModelSeriesPolicy.parse(str(policy)) == policy


@pytest.mark.parametrize("text", ["", "some", "top", "top:", "top:0", "top:-3", "top:x", "team:2"])
def test_a_bad_setting_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="'all', 'team' or 'top:N'"):
        ModelSeriesPolicy.parse(text)


def test_top_n_admits_while_places_are_free_then_keeps_the_busiest() -> None:
    clock = Clock()
    selector = ModelSeriesSelector(ModelSeriesPolicy("top", 2), rank_interval_s=60, clock=clock)
    assert selector.keeps("a") and selector.keeps("b"), "free places are taken at once"
    assert not selector.keeps("c"), "no place left until the next ranking"
    for model, requests in (("a", 1), ("b", 50), ("c", 100)):
        selector.count(model, requests)
    assert not selector.due()
    clock.now = 60
    assert selector.due()
    assert selector.rerank() == ({"c"}, {"a"})
    assert selector.kept == {"b", "c"}
    assert not selector.due(), "the next ranking is a full interval away"


def test_ties_keep_the_incumbents_and_quiet_incumbents_keep_free_places() -> None:
    selector = ModelSeriesSelector(ModelSeriesPolicy("top", 2))
    selector.rerank({"b": 5, "z": 5})
    assert selector.kept == {"b", "z"}
    assert selector.rerank({"a": 5, "b": 5, "z": 5}) == (set(), set()), "a newcomer must beat, not tie"
    assert selector.rerank({"z": 3}) == (set(), set()), "b went quiet but no one needs its place"
    assert selector.rerank({"z": 3, "q": 1}) == ({"q"}, {"b"})


def test_pinned_models_keep_their_series_and_team_mode_keeps_none_else() -> None:
    top = ModelSeriesSelector(ModelSeriesPolicy("top", 1))
    top.rerank({"busy": 10})
    top.pin(["alerting"])
    assert top.keeps("busy") and top.keeps("alerting") and not top.keeps("other")
    team = ModelSeriesSelector(ModelSeriesPolicy("team"))
    assert not team.keeps("busy")
    team.pin(["alerting"])
    assert team.keeps("alerting")
    everything = ModelSeriesSelector(ModelSeriesPolicy("all"))
    assert all(everything.keeps(f"m{i}") for i in range(1000))
