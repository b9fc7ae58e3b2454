"""What `register_sklearn` infers from an estimator and its training data."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from fleet_core.auth import Role, TokenAuthority
from fleet_core.privacy import PiiHasher
from fleet_core.schemas import FieldSpec
from fleet_registry.app import create_app
from fleet_registry.settings import RegistrySettings
from fleet_sdk.client import Client
from fleet_sdk.config import DEFAULT_URLS, ClientConfig
from fleet_sdk.sklearn import as_frame, compute_metrics, infer_signature, make_recipe, register_sklearn
from support.http import serving

SECRET = "sdk-test-secret-that-is-long-enough-for-hs256-0123"
SALT = "a-production-like-salt-0123456789"
ONLY_THE_REGISTRY = ClientConfig(urls=dict.fromkeys(DEFAULT_URLS, "http://127.0.0.1:1"))


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


def _customers() -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.DataFrame(
        {
            "income": np.linspace(0, 1, 20),
            "email": [f"user{i}@example.com" for i in range(20)],
            "plan": ["basic", "pro"] * 10,
        }
    )
    return X, np.arange(20) % 2


def _pipeline() -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]), ("passthrough", ["income"])
    )
    return make_pipeline(encode, LogisticRegression())


async def test_pii_columns_are_marked_in_the_signature_and_hashed_by_the_registry(tmp_path: Path) -> None:
    X, y = _customers()
    settings = RegistrySettings(
        home=tmp_path, jwt_secret=SECRET, kafka_bootstrap="127.0.0.1:1", consume_events=False, pii_salt=SALT
    )
    token, _, _ = TokenAuthority(SECRET).issue("ana", Role.ADMIN, ["*"], ttl=None)
    async with serving(create_app(settings)) as url:
        client = Client(url, token, config=ONLY_THE_REGISTRY)
        try:
            # The SDK client is synchronous: call it off the loop that serves the registry.
            version = await asyncio.to_thread(
                register_sklearn, client, "churn", _pipeline().fit(X, y), X, y, pii=["email", "plan"]
            )
            stored = await asyncio.to_thread(client.get_version, "churn", version["version"])
        finally:
            client.close()
    flags = {f["name"]: f["pii"] for f in stored["signature"]["inputs"]}
    assert flags == {"income": False, "email": True, "plan": True}
    text = json.dumps({k: v for k, v in stored.items() if k != "signature"})
    assert "@example.com" not in text, "raw emails in the stored profile or example input"
    plan = FieldSpec(name="plan", type="category", categories=["basic", "pro"], pii=True)
    assert set(stored["reference_profile"]["features"]["plan"]["frequencies"]) == {
        PiiHasher(SALT).category(plan, "basic"),
        PiiHasher(SALT).category(plan, "pro"),
    }


def test_an_unknown_pii_column_is_refused_by_name() -> None:
    X, y = _customers()
    client = Client("http://127.0.0.1:1", "no-token", config=ONLY_THE_REGISTRY)  # never reached
    with pytest.raises(ValueError, match="'e_mail'"):
        register_sklearn(client, "churn", _pipeline().fit(X, y), X, y, pii=["email", "e_mail"])
