"""The retrainer runs a recipe only through the allow-list: a recipe that names a process launcher or
any other importable callable (one stored before the allow-list, or built past the contract's
validation) is refused before anything runs; allow-listed estimators and registered training
functions train."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from pydantic import ValidationError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fleet_core.recipes import (
    TRAINING_FUNCTIONS_GROUP,
    _entry_points,
    training_function,
    training_function_names,
    unregister_training_function,
)
from fleet_core.schemas import Recipe
from fleet_retrainer.training import RecipeError, build_estimator, train

X = pd.DataFrame({"a": np.linspace(-1, 1, 40), "b": np.linspace(1, -1, 40) ** 2})
Y = pd.Series((X["a"] > 0).astype(int))


def shell_recipes(marker: Path) -> list[Recipe]:
    """Recipes that, imported by path, would run ``touch marker`` (built unvalidated, as a row
    stored before the allow-list would be)."""
    touch = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    return [
        Recipe.model_construct(kind="sklearn", estimator="subprocess.Popen", params={"args": touch}),
        Recipe.model_construct(kind="sklearn", estimator="subprocess:run", params={"args": touch}),
        Recipe.model_construct(kind="function", function="subprocess:check_call", params={"args": touch}),
        Recipe.model_construct(kind="function", function="os.system", params={"command": " ".join(touch)}),
    ]


def test_a_recipe_naming_a_process_launcher_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    for recipe in shell_recipes(marker):
        with pytest.raises(RecipeError):
            train(recipe, X, Y)
    assert not marker.exists(), "a recipe ran a process"


def test_the_contract_refuses_those_recipes_before_they_reach_a_job(tmp_path: Path) -> None:
    for recipe in shell_recipes(tmp_path / "owned"):
        with pytest.raises(ValidationError) as refused:
            Recipe.model_validate(recipe.model_dump())
        assert refused.value.errors()[0]["loc"] in {("estimator",), ("function",)}


def test_a_skops_blob_is_loaded_with_the_serving_allow_list_and_must_be_the_named_class() -> None:
    builtin = base64.b64encode(sio.dumps({"f": eval})).decode()  # skops does not trust builtins.eval
    with pytest.raises(RecipeError, match="not trusted"):
        build_estimator(Recipe(kind="sklearn", estimator="sklearn.pipeline.Pipeline", estimator_b64=builtin))
    other = base64.b64encode(sio.dumps(LinearRegression())).decode()
    with pytest.raises(RecipeError, match=r"not the sklearn\.pipeline\.Pipeline"):
        build_estimator(Recipe(kind="sklearn", estimator="sklearn.pipeline.Pipeline", estimator_b64=other))
    with pytest.raises(RecipeError, match="not a skops file"):
        build_estimator(
            Recipe(kind="sklearn", estimator="sklearn.pipeline.Pipeline", estimator_b64="bm90IGEgemlw")
        )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    blob = base64.b64encode(sio.dumps(pipeline)).decode()
    rebuilt = build_estimator(
        Recipe(kind="sklearn", estimator="sklearn.pipeline.Pipeline", estimator_b64=blob)
    )
    assert [name for name, _ in rebuilt.steps] == ["standardscaler", "logisticregression"]


def test_an_allow_listed_estimator_trains_by_its_public_or_its_own_path() -> None:
    for path in (
        "sklearn.linear_model.LogisticRegression",
        "sklearn.linear_model._logistic.LogisticRegression",
    ):
        model = train(Recipe(kind="sklearn", estimator=path, params={"C": 2.0}), X, Y)
        assert isinstance(model, LogisticRegression) and model.C == 2.0


@pytest.fixture
def scaled_logistic() -> Iterator[str]:
    calls: list[dict[str, Any]] = []

    @training_function("tests.scaled-logistic")
    def fit(features: pd.DataFrame, target: pd.Series, *, C: float = 1.0) -> Any:
        calls.append({"rows": len(features), "C": C})
        return make_pipeline(StandardScaler(), LogisticRegression(C=C)).fit(features, target)

    yield "tests.scaled-logistic"
    unregister_training_function("tests.scaled-logistic")
    assert calls == [{"rows": 40, "C": 0.5}]


def test_a_registered_training_function_trains_by_its_name(scaled_logistic: str) -> None:
    recipe = Recipe(kind="function", function=scaled_logistic, params={"C": 0.5})
    model = train(recipe, X, Y)
    assert model.predict(X).tolist() == Y.tolist()


def test_a_training_function_from_an_installed_package_is_found_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How platform packages register functions for every process: the registry sees the name in
    the package's metadata, and the retrainer loads the function only when a job needs it."""
    (tmp_path / "acme_training.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n"
        "def fit(X, y, *, C=1.0):\n"
        "    return LogisticRegression(C=C).fit(X, y)\n"
    )
    dist = tmp_path / "acme_training-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-training\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{TRAINING_FUNCTIONS_GROUP}]\nacme.logistic = acme_training:fit\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_points.cache_clear()
    try:
        assert "acme.logistic" in training_function_names()
        recipe = Recipe(kind="function", function="acme.logistic", params={"C": 3.0})
        model = train(recipe, X, Y)
        assert isinstance(model, LogisticRegression) and model.C == 3.0
    finally:
        monkeypatch.undo()
        _entry_points.cache_clear()
    with pytest.raises(ValidationError):
        Recipe(kind="function", function="acme.logistic")  # the package is gone again
