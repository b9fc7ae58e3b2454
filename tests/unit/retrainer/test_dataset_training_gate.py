"""From recipe and traffic to a verdict: labelled traffic parsed from the lake's JSON columns, the
newest rows held out, the model rebuilt by its recipe, and a gate that accepts a better candidate
and rejects a worse one on the same holdout."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fleet_core.schemas import Recipe
from fleet_retrainer.dataset import assemble, content_hash, labelled_frame, without_hashed_pii
from fleet_retrainer.gate import judge
from fleet_retrainer.training import RecipeError, build_estimator, train
from fleet_sdk.sklearn import make_recipe

FEATURES = ["a", "b"]


def population(n: int, *, shift: float, seed: int) -> pd.DataFrame:
    """The label depends on a + b; under ``shift`` both move and the boundary moves with them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1, size=(n, 2)), columns=FEATURES)
    frame["label"] = (frame["a"] + frame["b"] > 2 * shift + (1.5 if shift else 0)).astype(int)
    return frame


def lake_rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "timestamp": f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}",
            "inputs": pd.Series(r[FEATURES]).to_json(),
            "label": str(int(r["label"])),
        }
        for i, (_, r) in enumerate(frame.iterrows())
    ]


def test_labelled_traffic_is_parsed_in_time_order_and_incomplete_rows_dropped() -> None:
    rows = [
        {"timestamp": "2026-11-25T10:00:02", "inputs": '{"a": 2.0, "b": 1.0}', "label": "1"},
        {"timestamp": "2026-11-25T10:00:01", "inputs": '{"a": 0.5, "b": 0.1}', "label": "[0]"},
        {"timestamp": "2026-11-25T10:00:03", "inputs": '{"a": 1.0}', "label": "1"},
        {"timestamp": "2026-11-25T10:00:04", "inputs": '{"a": 1.0, "b": 2.0}', "label": "not json"},
    ]
    frame = labelled_frame(rows, FEATURES, "label")
    assert frame.to_dict("records") == [{"a": 0.5, "b": 0.1, "label": 0}, {"a": 2.0, "b": 1.0, "label": 1}]


def test_the_newest_traffic_is_held_out_and_the_hash_is_stable() -> None:
    base = population(200, shift=0, seed=1)
    traffic = labelled_frame(lake_rows(population(100, shift=2, seed=2)), FEATURES, "label")
    first = assemble(base, traffic, target="label", holdout_fraction=0.3)
    assert (len(first.train), len(first.holdout)) == (270, 30)
    assert first.holdout.equals(traffic.iloc[70:].reset_index(drop=True))
    again = assemble(base, traffic, target="label", holdout_fraction=0.3)
    assert first.content_hash == again.content_hash == content_hash(pd.concat([first.train, first.holdout]))


def test_recipes_rebuild_estimators_from_parameters_or_skops() -> None:
    simple = make_recipe(LogisticRegression(C=0.5), "classification", "label")
    assert simple.estimator_b64 is None and build_estimator(simple).C == 0.5
    pipeline = make_recipe(make_pipeline(StandardScaler(), LogisticRegression()), "classification", "label")
    assert pipeline.estimator_b64 is not None
    assert [name for name, _ in build_estimator(pipeline).steps] == ["standardscaler", "logisticregression"]


def test_a_recipe_with_untrusted_types_or_a_bad_path_is_refused() -> None:
    class NotSklearn:
        """A type skops has no reason to trust."""

    blob = base64.b64encode(sio.dumps({"x": NotSklearn()})).decode()
    with pytest.raises(RecipeError, match="not trusted"):
        build_estimator(Recipe(kind="sklearn", estimator="sklearn.pipeline.Pipeline", estimator_b64=blob))
    # The contract refuses the path already; a recipe stored before the allow-list is refused here.
    with pytest.raises(RecipeError, match="not an allowed estimator"):
        build_estimator(Recipe.model_construct(kind="sklearn", estimator="sklearn.linear_model.NoSuchModel"))


def test_the_gate_accepts_a_candidate_retrained_on_new_traffic_and_rejects_a_worse_one() -> None:
    base = population(300, shift=0, seed=3)
    traffic = labelled_frame(lake_rows(population(300, shift=2, seed=4)), FEATURES, "label")
    data = assemble(base, traffic, target="label", holdout_fraction=0.3)
    recipe = make_recipe(LogisticRegression(), "classification", "label")
    champion = train(recipe, base[FEATURES], base["label"])
    candidate = train(recipe, data.train[FEATURES], data.train["label"])
    better = judge(champion, candidate, data.holdout, target="label", task="classification")
    assert better.accepted and better.candidate["accuracy"] > better.champion["accuracy"]
    assert better.reasons[0].startswith("better: accuracy")

    worse = judge(candidate, champion, data.holdout, target="label", task="classification")
    assert not worse.accepted and worse.reasons[0].startswith("worse: accuracy")
    picky = judge(
        champion, candidate, data.holdout, target="label", task="classification", min_improvement=0.99
    )
    assert not picky.accepted and "required" in picky.reasons[0]


def test_rows_whose_pii_inputs_are_hashes_are_dropped_and_counted() -> None:
    rows = [
        {"timestamp": "1", "inputs": '{"a": "sha256:' + "0" * 64 + '", "b": 1.0}', "label": "1"},
        {"timestamp": "2", "inputs": '{"a": 0.5, "b": 0.1}', "label": "0"},
        {"timestamp": "3", "inputs": '{"a": null, "b": 0.2}', "label": "0"},
    ]
    kept, dropped = without_hashed_pii(rows, ["a"])
    assert dropped == 1 and [r["timestamp"] for r in kept] == ["2", "3"]
    assert without_hashed_pii(rows, []) == (rows, 0)
