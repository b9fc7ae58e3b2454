"""Rebuilding a model from its recipe: a scikit-learn estimator (class and parameters, or the
unfitted estimator serialised with skops) or an importable training function."""

from __future__ import annotations

import base64
import importlib
from typing import Any

import pandas as pd

from fleet_core.schemas import Recipe

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
"""Types a skops-serialised recipe may contain; anything else is refused, not loaded."""


class RecipeError(ValueError):
    """The recipe cannot be turned into a trainable model (and never will: not retried)."""


def _import(path: str) -> Any:
    module, _, name = path.replace(":", ".").rpartition(".")
    if not module:
        raise RecipeError(f"{path!r} is not an import path")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"cannot import {path!r}: {exc}") from exc


def build_estimator(recipe: Recipe) -> Any:
    """A fresh, unfitted estimator as the recipe describes it."""
    if recipe.kind != "sklearn":
        raise RecipeError(f"recipe kind {recipe.kind!r} has no estimator; train it with train()")
    if recipe.estimator_b64:
        import skops.io as sio

        blob = base64.b64decode(recipe.estimator_b64)
        untrusted = sio.get_untrusted_types(data=blob)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if refused:
            raise RecipeError(f"the recipe's estimator holds types that are not trusted: {refused}")
        return sio.loads(blob, trusted=untrusted)
    if not recipe.estimator:
        raise RecipeError("a sklearn recipe needs 'estimator' or 'estimator_b64'")
    cls = _import(recipe.estimator)
    try:
        return cls(**recipe.params)
    except TypeError as exc:
        raise RecipeError(f"{recipe.estimator} does not take these parameters: {exc}") from exc


def train(recipe: Recipe, X: pd.DataFrame, y: pd.Series) -> Any:
    """Fit a model on ``X``/``y`` by the recipe."""
    if recipe.kind == "function":
        assert recipe.function is not None
        fn = _import(recipe.function)
        return fn(X, y, **recipe.params)
    return build_estimator(recipe).fit(X, y)
