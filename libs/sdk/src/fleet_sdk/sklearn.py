"""Registering scikit-learn estimators: signature inference, reference profile, metrics, recipe,
training dataset version, skops serialisation, upload."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fleet_core.profile import reference_profile
from fleet_core.schemas import FieldSpec, Recipe, ResourceQuota, Signature
from fleet_sdk.errors import FleetAPIError

if TYPE_CHECKING:
    from fleet_sdk.client import Client

MAX_CATEGORIES = 50


def as_frame(X: Any) -> pd.DataFrame:
    """Training inputs as a DataFrame; arrays get columns f0, f1, ..."""
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X_train must be 2-dimensional, got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"f{i}" for i in range(arr.shape[1])])


def _is_categorical(series: pd.Series) -> bool:
    return bool(
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(series.dtype)
        or pd.api.types.is_string_dtype(series.dtype)
    )


def infer_field(name: str, series: pd.Series, *, range_margin: float | None = None) -> FieldSpec:
    """A signature field from a training column. ``range_margin`` (e.g. 0.5) sets allowed bounds at
    the training range widened by that fraction of its span; None leaves numbers unbounded."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return FieldSpec(name=name, type="bool")
    if _is_categorical(series):
        values = sorted({str(v) for v in series.dropna().unique()})
        if len(values) <= MAX_CATEGORIES:
            return FieldSpec(name=name, type="category", categories=values)
        return FieldSpec(name=name, type="string")
    kind = "int" if pd.api.types.is_integer_dtype(series.dtype) else "float"
    spec = FieldSpec(name=name, type=kind, nullable=bool(series.isna().any()))
    if range_margin is not None and len(series.dropna()):
        lo, hi = float(series.min()), float(series.max())
        pad = (hi - lo) * range_margin
        spec.minimum, spec.maximum = lo - pad, hi + pad
    return spec


def infer_signature(X: pd.DataFrame, estimator: Any, *, range_margin: float | None = None) -> Signature:
    from sklearn.base import is_classifier

    inputs = [infer_field(str(c), X[c], range_margin=range_margin) for c in X.columns]
    if is_classifier(estimator):
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(estimator, "classes_", [])]
        out_type = "int" if all(isinstance(c, int) for c in classes) else "category"
        output = FieldSpec(
            name="prediction",
            type=out_type,
            categories=[str(c) for c in classes] if out_type == "category" else None,
        )
    else:
        output = FieldSpec(name="prediction", type="float")
    return Signature(inputs=inputs, outputs=[output])


def _task(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    return (
        "classification" if is_classifier(estimator) else "regression" if is_regressor(estimator) else "other"
    )


def prediction_metrics(y: Any, pred: Any, task: str) -> dict[str, float]:
    """Metrics of predictions against labels: accuracy/precision/recall/F1 (macro) for
    classification, MAE/RMSE/R² for regression, none for other tasks."""
    from sklearn import metrics as m

    if task == "classification":
        out = {
            "accuracy": m.accuracy_score(y, pred),
            "precision": m.precision_score(y, pred, average="macro", zero_division=0),
            "recall": m.recall_score(y, pred, average="macro", zero_division=0),
            "f1": m.f1_score(y, pred, average="macro", zero_division=0),
        }
    elif task == "regression":
        out = {
            "mae": m.mean_absolute_error(y, pred),
            "rmse": math.sqrt(m.mean_squared_error(y, pred)),
            "r2": m.r2_score(y, pred),
        }
    else:
        out = {}
    return {k: round(float(v), 6) for k, v in out.items()}


def compute_metrics(estimator: Any, X: pd.DataFrame, y: Any, task: str) -> dict[str, float]:
    """Holdout metrics of an estimator (``prediction_metrics``), plus ROC AUC for binary classifiers."""
    from sklearn import metrics as m

    out = prediction_metrics(y, estimator.predict(X), task)
    if task == "classification" and hasattr(estimator, "predict_proba") and len(np.unique(y)) == 2:
        out["roc_auc"] = round(float(m.roc_auc_score(y, estimator.predict_proba(X)[:, 1])), 6)
    return out


def _json_safe(params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return json.loads(json.dumps(params))  # type: ignore[no-any-return]
    except (TypeError, ValueError):
        return None


def make_recipe(estimator: Any, task: str, target: str | None) -> Recipe:
    """How to rebuild: the estimator class and its JSON parameters, or (for composite estimators such
    as pipelines) the unfitted estimator itself serialised with skops."""
    import skops.io as sio
    from sklearn.base import clone

    cls = type(estimator)
    params = _json_safe(estimator.get_params(deep=False))
    if params is not None:
        return Recipe(
            kind="sklearn",
            estimator=f"{cls.__module__}.{cls.__qualname__}",
            params=params,
            target=target,
            task=task,
        )  # type: ignore[arg-type]
    blob = base64.b64encode(sio.dumps(clone(estimator))).decode()
    return Recipe(
        kind="sklearn",
        estimator=f"{cls.__module__}.{cls.__qualname__}",
        estimator_b64=blob,
        target=target,
        task=task,
    )  # type: ignore[arg-type]


def _native(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mark_pii(signature: Signature, pii: Sequence[str]) -> Signature:
    """``signature`` with the ``pii`` inputs flagged; a ValueError naming any input it does not have."""
    if isinstance(pii, str):
        pii = [pii]  # pii="email" means one column, not five letters
    unknown = [name for name in pii if signature.input(name) is None]
    if unknown:
        raise ValueError(
            f"pii names {', '.join(map(repr, unknown))}, not an input of the signature "
            f"(inputs: {', '.join(f.name for f in signature.inputs)})"
        )
    marked = set(pii)
    inputs = [f.model_copy(update={"pii": True}) if f.name in marked else f for f in signature.inputs]
    return signature.model_copy(update={"inputs": inputs})


def register_sklearn(
    client: Client,
    name: str,
    estimator: Any,
    X_train: Any,
    y_train: Any = None,
    *,
    team: str = "default",
    X_test: Any = None,
    y_test: Any = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    aliases: Sequence[str] = (),
    dataset: str | None = None,
    target_name: str = "target",
    deploy_policy: str = "none",
    quota: ResourceQuota | dict[str, Any] | None = None,
    range_margin: float | None = None,
    signature: Signature | None = None,
    pii: Sequence[str] = (),
    example_rows: int = 3,
    progress: Callable[[int, int], None] | None = None,
    lineage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a fitted estimator as the next version of ``name`` (created in ``team`` if new).

    ``pii`` names the input columns holding personal data: they are marked ``pii`` in the inferred
    (or given) signature, so the gateway logs only a keyed hash of their values and the registry
    hashes them in the reference profile and the example input; an unknown name is a ValueError.

    ``lineage`` sets ``origin``, ``parent_version`` and ``trigger_event_id`` (the retrainer's
    versions: ``{"origin": "retrain", "parent_version": 3, "trigger_event_id": ...}``).

    The training data is stored as a content-hashed dataset version (``dataset``, default
    ``<name>-training``) so the version's lineage and later retraining can use it. Metrics come
    from ``X_test``/``y_test`` when given, else from the training data (prefixed ``train_``).
    """
    import skops.io as sio

    X = as_frame(X_train)
    task = _task(estimator)
    sig = _mark_pii(signature or infer_signature(X, estimator, range_margin=range_margin), pii)
    categorical = {f.name for f in sig.inputs if f.type in {"category", "string"}}
    predictions = estimator.predict(X)
    profile = reference_profile(
        {c: X[c].to_numpy() for c in X.columns},
        categorical=categorical,
        predictions=predictions,
        predictions_categorical=task == "classification",
        target=np.asarray(y_train) if y_train is not None else None,
    )
    if X_test is not None and y_test is not None:
        metrics = compute_metrics(estimator, as_frame(X_test), y_test, task)
    elif y_train is not None:
        metrics = {f"train_{k}": v for k, v in compute_metrics(estimator, X, y_train, task).items()}
    else:
        metrics = {}

    try:
        client.get_model(name)
    except FleetAPIError as exc:
        if exc.status != 404:
            raise
        client.create_model(name, team, description=description, tags=list(tags))

    dataset_name = dataset or f"{name}-training"
    try:
        client.get_dataset(dataset_name)
    except FleetAPIError as exc:
        if exc.status != 404:
            raise
        client.create_dataset(dataset_name, team, description=f"Training data of {name}")
    frame = X.copy()
    if y_train is not None:
        frame[target_name] = np.asarray(y_train)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    dataset_version = client.upload_dataset_version(
        dataset_name,
        buf.getvalue(),
        row_count=len(frame),
        format="parquet",
        schema={str(c): str(frame[c].dtype) for c in frame.columns},
    )

    params = _json_safe(estimator.get_params(deep=False)) or {
        k: repr(v) for k, v in estimator.get_params(deep=False).items()
    }
    metadata = {
        "flavor": "sklearn",
        "task": task,
        "signature": sig.model_dump(mode="json"),
        "metrics": metrics,
        "hyperparameters": params,
        "dataset_version": {"dataset": dataset_name, "version": dataset_version["version"]},
        "recipe": make_recipe(estimator, task, target_name if y_train is not None else None).model_dump(
            mode="json"
        ),
        "reference_profile": profile.model_dump(mode="json"),
        "deploy_policy": deploy_policy,
        "quota": ResourceQuota.model_validate(quota).model_dump(mode="json") if quota else None,
        "example_input": [
            {str(k): _native(v) for k, v in row.items()} for row in X.head(example_rows).to_dict("records")
        ],
        "tags": list(tags),
        "description": description,
        "aliases": list(aliases),
        **(lineage or {}),
    }
    return client.register_version(name, sio.dumps(estimator), metadata, progress=progress)
