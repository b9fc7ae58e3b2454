"""Rebuilding a model from its recipe, through the recipe allow-list (``fleet_core.recipes``) only:
an allow-listed scikit-learn estimator (its class and parameters, or the unfitted estimator
serialised with skops, loaded with the serving engine's trusted types), or a registered training
function. No recipe field is ever imported as a path."""

from __future__ import annotations

import base64
import binascii
import zipfile
from typing import Any

import pandas as pd

from fleet_core.recipes import RecipeRefused, estimator_class, resolve_training_function
from fleet_core.schemas import Recipe


class RecipeError(ValueError):
    """The recipe cannot be turned into a trainable model (and never will: not retried)."""


def _estimator_class(recipe: Recipe) -> type:
    if not recipe.estimator:
        raise RecipeError("a sklearn recipe needs 'estimator' (the class, also with 'estimator_b64')")
    try:
        return estimator_class(recipe.estimator)
    except RecipeRefused as exc:
        raise RecipeError(str(exc)) from exc


def _from_skops(recipe: Recipe, cls: type) -> Any:
    import skops.io as sio

    # The serving engine's allow-list: the recipe's blob gets no more trust than a served model.
    from fleet_serving.errors import UntrustedArtifactError
    from fleet_serving.runtimes.sklearn import trusted_types

    assert recipe.estimator_b64 is not None
    try:
        blob = base64.b64decode(recipe.estimator_b64, validate=True)
        untrusted = sio.get_untrusted_types(data=blob)
    except (binascii.Error, zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise RecipeError(f"the recipe's estimator_b64 is not a skops file: {exc}") from exc
    try:
        trusted = trusted_types(untrusted)
    except UntrustedArtifactError as exc:
        raise RecipeError(f"the recipe's estimator holds types that are not trusted: {exc.detail}") from exc
    estimator = sio.loads(blob, trusted=trusted)
    if type(estimator) is not cls:
        held = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
        raise RecipeError(f"the recipe's estimator_b64 holds a {held}, not the {recipe.estimator} it names")
    return estimator


def build_estimator(recipe: Recipe) -> Any:
    """A fresh, unfitted estimator as the recipe describes it."""
    if recipe.kind != "sklearn":
        raise RecipeError(f"recipe kind {recipe.kind!r} has no estimator; train it with train()")
    cls = _estimator_class(recipe)
    if recipe.estimator_b64:
        return _from_skops(recipe, cls)
    try:
        return cls(**recipe.params)
    except TypeError as exc:
        raise RecipeError(f"{recipe.estimator} does not take these parameters: {exc}") from exc


def train(recipe: Recipe, X: pd.DataFrame, y: pd.Series) -> Any:
    """Fit a model on ``X``/``y`` by the recipe."""
    if recipe.kind == "function":
        if not recipe.function:
            raise RecipeError("a function recipe needs 'function'")
        try:
            fn = resolve_training_function(recipe.function)
        except RecipeRefused as exc:
            raise RecipeError(str(exc)) from exc
        return fn(X, y, **recipe.params)
    return build_estimator(recipe).fit(X, y)
