"""What `register_sklearn` infers from an estimator and its training data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression

from fleet_sdk.sklearn import as_frame, compute_metrics, infer_signature, make_recipe


def test_signature_types_follow_the_training_columns() -> None:
    X = pd.DataFrame(
        {
            "age": np.arange(20, dtype=np.int64),
            "income": np.linspace(0, 1, 20),
            "plan": ["basic", "pro"] * 10,
            "active": [True, False] * 10,
        }
    )
    y = np.arange(20) % 2
    model = LogisticRegression().fit(pd.get_dummies(X).astype(float), y)
    sig = infer_signature(X, model)
    types = {f.name: f.type for f in sig.inputs}
    assert types == {"age": "int", "income": "float", "plan": "category", "active": "bool"}
    assert sig.input("plan").categories == ["basic", "pro"]
    assert sig.outputs[0].type == "int"


def test_range_margin_widens_the_training_range() -> None:
    X = pd.DataFrame({"x": [0.0, 10.0]})
    sig = infer_signature(X, LinearRegression().fit(X, [0, 1]), range_margin=0.5)
    assert (sig.inputs[0].minimum, sig.inputs[0].maximum) == (-5.0, 15.0)


def test_arrays_get_positional_column_names() -> None:
    assert list(as_frame(np.zeros((3, 2))).columns) == ["f0", "f1"]


def test_regression_metrics_are_mae_rmse_r2() -> None:
    X = pd.DataFrame({"x": np.arange(10.0)})
    y = 2 * X["x"] + 1
    metrics = compute_metrics(LinearRegression().fit(X, y), X, y, "regression")
    assert metrics["mae"] < 1e-9 and metrics["rmse"] < 1e-9 and metrics["r2"] == 1.0


def test_recipe_records_class_and_json_params_or_the_unfitted_pipeline() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    plain = make_recipe(LogisticRegression(C=0.5), "classification", "label")
    assert plain.estimator == "sklearn.linear_model._logistic.LogisticRegression"
    assert plain.params["C"] == 0.5 and plain.estimator_b64 is None
    pipe = make_recipe(make_pipeline(StandardScaler(), LogisticRegression()), "classification", "label")
    assert pipe.estimator_b64 and pipe.estimator == "sklearn.pipeline.Pipeline"
