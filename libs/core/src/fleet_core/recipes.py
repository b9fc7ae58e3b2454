"""The recipe allow-list: what a version's recipe may name, because the retrainer will run it.

A recipe names either a scikit-learn estimator class or a registered training function. Nothing
else is ever imported by name: an estimator path must lie under one of the scikit-learn estimator
packages below and resolve to a ``BaseEstimator`` subclass, and a training function is looked up
by its registered name, never by an import path.

Training functions are registered under a name, either in-process with ``@training_function``
or, for every process of the fleet at once (registry, retrainer, Ray workers), as an entry point
of an installed package in the ``modelfleet.training_functions`` group::

    [project.entry-points."modelfleet.training_functions"]
    "acme.two-stage" = "acme_training.two_stage:fit"

The registry refuses a recipe outside the allow-list at registration (the ``Recipe`` contract
validates itself with these functions); the retrainer resolves recipes only through them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

SKLEARN_ESTIMATOR_PACKAGES: frozenset[str] = frozenset(
    {
        "calibration",
        "cluster",
        "compose",
        "covariance",
        "cross_decomposition",
        "decomposition",
        "discriminant_analysis",
        "dummy",
        "ensemble",
        "feature_extraction",
        "feature_selection",
        "frozen",
        "gaussian_process",
        "impute",
        "isotonic",
        "kernel_approximation",
        "kernel_ridge",
        "linear_model",
        "manifold",
        "mixture",
        "model_selection",
        "multiclass",
        "multioutput",
        "naive_bayes",
        "neighbors",
        "neural_network",
        "pipeline",
        "preprocessing",
        "random_projection",
        "semi_supervised",
        "svm",
        "tree",
    }
)
"""The scikit-learn packages whose estimators, transformers and pipelines a recipe may name (the
packages ``sklearn.utils.all_estimators()`` finds estimators in). Not ``utils``, ``base``,
``datasets``, ``metrics`` or ``externals``: nothing there is a model to train."""

TRAINING_FUNCTIONS_GROUP = "modelfleet.training_functions"
"""The entry-point group installed packages register training functions in."""

FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
"""A training function's registered name: a slug, never an import path (no ``:``)."""

TrainingFunction = Callable[..., Any]
"""``fn(X, y, **params) -> fitted estimator``: X a DataFrame of the signature's inputs, y the target."""

F = TypeVar("F", bound=TrainingFunction)

_REGISTERED: dict[str, TrainingFunction] = {}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RecipeRefused(ValueError):
    """A recipe names something outside the allow-list (a ``ValueError``, so pydantic reports it
    at the field it was raised for)."""


# --------------------------------------------------------------------------- estimators


def _sklearn_path_parts(path: str) -> list[str]:
    """The dotted parts of ``path`` if it can name a class in an allowed package, else refuse."""
    parts = path.split(".")
    if (
        len(parts) < 3
        or parts[0] != "sklearn"
        or parts[1] not in SKLEARN_ESTIMATOR_PACKAGES
        or not all(_IDENTIFIER.match(p) for p in parts)
        # sklearn ships its test modules; they are not estimators and are never imported.
        or any(p == "tests" or p.startswith(("test_", "conftest")) for p in parts)
        or parts[-1].startswith("_")
    ):
        raise RecipeRefused(
            f"{path!r} is not an allowed estimator: a recipe may name a scikit-learn estimator, "
            f"transformer or pipeline class under sklearn.{{{', '.join(sorted(SKLEARN_ESTIMATOR_PACKAGES))}}}"
            " (or use kind 'function' with a registered training function)"
        )
    return parts


def estimator_class(path: str) -> type:
    """The scikit-learn estimator class ``path`` names, or ``RecipeRefused``.

    ``path`` is the public path (``sklearn.linear_model.LogisticRegression``) or the class's own
    (``sklearn.linear_model._logistic.LogisticRegression``, what the SDK records). Only modules
    under an allowed scikit-learn package are imported, and only a ``BaseEstimator`` subclass
    defined there is returned."""
    parts = _sklearn_path_parts(path)
    try:
        from sklearn.base import BaseEstimator
    except ImportError as exc:  # pragma: no cover - every service that resolves recipes has sklearn
        raise RecipeRefused(f"{path!r}: scikit-learn is not installed here") from exc
    module_name, name = ".".join(parts[:-1]), parts[-1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeRefused(f"{path!r} is not an allowed estimator: no module {module_name}") from exc
    # vars(), not getattr(): a package's __getattr__ may import more (sklearn's experimental hooks).
    cls = vars(module).get(name)
    package = f"sklearn.{parts[1]}"
    if not (
        isinstance(cls, type)
        and issubclass(cls, BaseEstimator)
        and (cls.__module__ == package or cls.__module__.startswith(package + "."))
        and (module_name == package or f"{cls.__module__}.{cls.__qualname__}" == path)
    ):
        raise RecipeRefused(
            f"{path!r} is not an allowed estimator: {module_name} defines no scikit-learn estimator "
            f"class {name!r}"
        )
    return cls


def check_estimator(path: str) -> str:
    """``path`` if a recipe may name it, else ``RecipeRefused``.

    Where scikit-learn is installed (the registry, the retrainer, serving) the class is resolved
    as :func:`estimator_class` does; a process without it (one that only relays a recipe inside
    an event) checks the shape of the path, which is never looser than the full check."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        _sklearn_path_parts(path)
        return path
    estimator_class(path)
    return path


# --------------------------------------------------------------------------- training functions


def training_function(name: str) -> Callable[[F], F]:
    """Register ``fn(X, y, **params)`` as the training function ``name`` in this process."""
    if not FUNCTION_NAME.match(name):
        raise ValueError(f"{name!r} is not a training function name (letters, digits, '_', '-', '.')")

    def register(fn: F) -> F:
        if name in _REGISTERED and _REGISTERED[name] is not fn:
            raise ValueError(f"a training function named {name!r} is registered already")
        _REGISTERED[name] = fn
        return fn

    return register


def unregister_training_function(name: str) -> None:
    """Forget an in-process registration (tests; a plugin being unloaded)."""
    _REGISTERED.pop(name, None)


@cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    # Installed packages do not change while a process runs; reading metadata once is enough.
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=TRAINING_FUNCTIONS_GROUP)}


def training_function_names() -> frozenset[str]:
    """Every training function a recipe may name here."""
    return frozenset(_REGISTERED) | frozenset(_entry_points())


def check_training_function(name: str) -> str:
    """``name`` if it is a registered training function, else ``RecipeRefused``."""
    if not FUNCTION_NAME.match(name) or name not in training_function_names():
        known = ", ".join(sorted(training_function_names())) or "none"
        raise RecipeRefused(
            f"{name!r} is not a registered training function (registered: {known}); a recipe names a "
            f"function registered with @training_function or the {TRAINING_FUNCTIONS_GROUP!r} "
            "entry-point group, never an import path"
        )
    return name


def resolve_training_function(name: str) -> TrainingFunction:
    """The registered function ``name``; entry points are loaded only when a job needs them."""
    check_training_function(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    fn = _entry_points()[name].load()
    if not callable(fn):
        raise RecipeRefused(f"the training function {name!r} is not callable")
    return fn  # type: ignore[no-any-return]
