"""A version's recipe is code the retrainer will run, so the registry refuses one that names anything
but an allow-listed scikit-learn estimator or a registered training function: a 422 problem naming
``recipe.estimator`` (or ``recipe.function``), and nothing is registered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_core.recipes import training_function, unregister_training_function
from support.registry import RegistryHarness, running_registry, upload_version, version_metadata

PROBLEMS = "https://modelfleet.dev/problems/"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryHarness]:
    async with running_registry(tmp_path) as h:
        r = await h.client.post("/v1/models", json={"name": "credit", "team": "alpha"}, headers=h.auth())
        assert r.status_code == 201, r.text
        yield h


@pytest.fixture
def fit_two_stage() -> Iterator[str]:
    """A training function registered under a name, as a platform package would register it."""

    @training_function("tests.fit-two-stage")
    def fit(X: Any, y: Any) -> Any:
        raise AssertionError("registration never calls a training function")

    yield "tests.fit-two-stage"
    unregister_training_function("tests.fit-two-stage")


async def versions(h: RegistryHarness) -> list[dict[str, Any]]:
    r = await h.client.get("/v1/models/credit/versions", headers=h.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    return body["items"] if isinstance(body, dict) else body


def assert_refused(r: Any, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"].startswith(PROBLEMS) and body["status"] == 422
    assert body["field"].endswith(field), body
    return body


@pytest.mark.parametrize(
    "recipe",
    [
        {"kind": "sklearn", "estimator": "os.system", "params": {"command": "touch /tmp/owned"}},
        {"kind": "sklearn", "estimator": "subprocess.Popen", "params": {"args": ["sh", "-c", "id"]}},
        {"kind": "sklearn", "estimator": "builtins.eval"},
        {"kind": "sklearn", "estimator": "sklearn.utils.Bunch"},  # sklearn, but no estimator
        {"kind": "sklearn", "estimator": "sklearn.pipeline.make_pipeline"},  # a function, not a class
        {"kind": "sklearn", "estimator": "sklearn.linear_model.NoSuchModel"},
        {"kind": "sklearn", "estimator": "sklearn.linear_model.tests.test_base.LinearRegression"},
    ],
    ids=lambda r: r["estimator"],
)
async def test_a_recipe_naming_anything_but_an_allow_listed_estimator_is_a_422(
    registry: RegistryHarness, recipe: dict[str, Any]
) -> None:
    r = await upload_version(registry, "credit", registry.auth(), recipe={**recipe, "target": "y"})
    body = assert_refused(r, "recipe.estimator")
    assert body["field"] == "metadata.recipe.estimator"
    assert recipe["estimator"] in body["detail"]
    assert await versions(registry) == []


@pytest.mark.parametrize("function", ["subprocess:Popen", "os.system", "tests.never-registered"])
async def test_a_recipe_naming_an_unregistered_training_function_is_a_422(
    registry: RegistryHarness, function: str
) -> None:
    recipe = {"kind": "function", "function": function, "params": {"args": "id"}, "target": "y"}
    r = await upload_version(registry, "credit", registry.auth(), recipe=recipe)
    assert_refused(r, "recipe.function")
    assert await versions(registry) == []


async def test_registration_from_a_uri_refuses_the_recipe_the_same_way(registry: RegistryHarness) -> None:
    body = {
        **version_metadata(recipe={"kind": "sklearn", "estimator": "subprocess.Popen"}),
        "artifact_uri": "file:///nowhere/model.skops",
        "sha256": "0" * 64,
    }
    r = await registry.client.post("/v1/models/credit/versions/from-uri", json=body, headers=registry.auth())
    assert assert_refused(r, "recipe.estimator")["field"] == "recipe.estimator"
    assert await versions(registry) == []


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.linear_model.LogisticRegression",  # the public path
        "sklearn.linear_model._logistic.LogisticRegression",  # the class's own, as the SDK records it
        "sklearn.pipeline.Pipeline",
        "sklearn.feature_extraction.text.TfidfVectorizer",
    ],
)
async def test_allow_listed_estimators_and_registered_functions_are_registered(
    registry: RegistryHarness, estimator: str, fit_two_stage: str
) -> None:
    r = await upload_version(
        registry, "credit", registry.auth(), recipe={"kind": "sklearn", "estimator": estimator, "target": "y"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["recipe"]["estimator"] == estimator
    recipe = {"kind": "function", "function": fit_two_stage, "target": "y"}
    r = await upload_version(registry, "credit", registry.auth(), recipe=recipe)
    assert r.status_code == 201, r.text
    assert len(await versions(registry)) == 2


async def test_a_version_stored_before_the_allow_list_still_reads_without_its_recipe(
    registry: RegistryHarness,
) -> None:
    """A row written by an older release whose recipe the allow-list now refuses: the version
    reads (no 500), its recipe is withheld, so it is never retrained by it."""
    from sqlalchemy import update

    from fleet_registry.models import VersionRow

    r = await upload_version(registry, "credit", registry.auth())
    assert r.status_code == 201, r.text
    async with registry.app.state.db.transaction() as s:
        await s.execute(
            update(VersionRow).values(
                recipe={"kind": "sklearn", "estimator": "subprocess.Popen", "params": {}}
            )
        )
    got = await registry.client.get("/v1/models/credit/versions/1", headers=registry.auth())
    assert got.status_code == 200, got.text
    assert got.json()["recipe"] is None
