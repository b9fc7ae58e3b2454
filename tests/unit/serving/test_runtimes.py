"""Runtimes load verified artifacts of each flavor and predict one JSON value per row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin

from fleet_core.settings import FleetSettings
from fleet_serving import (
    ArtifactIntegrityError,
    OnnxRuntime,
    SklearnRuntime,
    UntrustedArtifactError,
    aload_model,
    load_model,
)
from fleet_serving.settings import ServingSettings
from support.serving import (
    BuiltModel,
    array_model,
    category_pipeline,
    infer_signature,
    logistic_model,
    make_spec,
    numeric_frame,
    onnx_of,
    python_model,
)


@pytest.fixture
def settings() -> FleetSettings:
    return FleetSettings()


class HomeMadeClassifier(ClassifierMixin, BaseEstimator):
    """A class skops has never heard of: its type is untrusted."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_sklearn_model_predicts_labels_as_plain_python(tmp_path: Path, settings: FleetSettings) -> None:
    built = logistic_model(tmp_path)
    runtime = load_model(built.spec, settings)
    assert isinstance(runtime, SklearnRuntime)
    predictions = runtime.predict(built.rows(20))
    assert predictions == built.expected(20)
    assert all(type(p) is int for p in predictions)
    json.dumps(predictions)


def test_rows_are_taken_in_signature_order_whatever_their_key_order(
    tmp_path: Path, settings: FleetSettings
) -> None:
    built = logistic_model(tmp_path)
    runtime = load_model(built.spec, settings)
    shuffled = [dict(reversed(list(row.items()))) for row in built.rows(10)]
    assert runtime.predict(shuffled) == built.expected(10)


def test_pipeline_with_a_category_column_predicts_like_the_fitted_pipeline(
    tmp_path: Path, settings: FleetSettings
) -> None:
    built = category_pipeline(tmp_path)
    assert {f.name: f.type for f in built.spec.signature.inputs}["plan"] == "category"
    runtime = load_model(built.spec, settings)
    predictions = runtime.predict(built.rows(50))
    assert predictions == built.expected(50)
    assert set(predictions) <= {"churn", "stay"}


def test_numeric_pipeline_selecting_columns_by_name_still_gets_its_dataframe(
    tmp_path: Path, settings: FleetSettings
) -> None:
    # All-numeric inputs take a float-matrix fast path, but only when the model answers the same
    # way; a ColumnTransformer that selects by column name must keep getting a DataFrame.
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame, y = numeric_frame(seed=3)
    est = Pipeline(
        [
            ("pre", ColumnTransformer([("scaled", StandardScaler(), ["width", "sepal"])], remainder="drop")),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    spec = make_spec(tmp_path, "by-name", "sklearn", sio.dumps(est), infer_signature(frame, est))
    built = BuiltModel(spec, est, frame)
    runtime = load_model(spec, settings)
    shuffled = [dict(reversed(list(row.items()))) for row in built.rows(40)]
    assert runtime.predict(shuffled) == built.expected(40)


@pytest.mark.parametrize(
    "kind", ["RandomForestClassifier", "ExtraTreesClassifier", "RandomForestRegressor", "multiclass"]
)
def test_forests_predict_without_joblib_and_answer_exactly_as_sklearn(
    tmp_path: Path, settings: FleetSettings, kind: str
) -> None:
    # A forest's own predict dispatches every tree through joblib (~1.9 ms for 40 trees and one
    # row); the runtime sums the trees itself, in sklearn's order: the same answers, bit for bit.
    import sklearn.ensemble as ensemble

    frame, y = numeric_frame(n=400, seed=5)
    if kind == "multiclass":
        kind, y = "RandomForestClassifier", np.digitize(frame["sepal"], [4.5, 5.0, 5.5])
    target = frame["sepal"] * 2 + frame["petal"] if kind.endswith("Regressor") else y
    est = getattr(ensemble, kind)(n_estimators=25, max_depth=6, random_state=0).fit(frame, target)
    task = "regression" if kind.endswith("Regressor") else "classification"
    spec = make_spec(tmp_path, "forest", "sklearn", sio.dumps(est), infer_signature(frame, est), task=task)
    spec = spec.model_copy(update={"example_input": frame.head(3).to_dict(orient="records")})
    runtime = load_model(spec, settings)
    assert isinstance(runtime, SklearnRuntime)
    assert runtime._matrix_predict is not None and runtime._matrix_predict != runtime.model.predict
    rng = np.random.default_rng(9)
    probes = frame.sample(300, replace=True, random_state=1) + rng.normal(0, 0.5, (300, 3))
    rows = probes.to_dict(orient="records")
    assert runtime.predict(rows) == [v.item() for v in est.predict(probes)]
    assert runtime.predict(rows[:1]) == [est.predict(probes.head(1))[0].item()]


def test_a_forest_subclass_keeps_its_own_predict(tmp_path: Path, settings: FleetSettings) -> None:
    from sklearn.ensemble import RandomForestClassifier

    class Capped(RandomForestClassifier):
        """A subclass may override predict: the runtime must not bypass it (none is needed here)."""

    frame, y = numeric_frame(seed=2)
    est = Capped(n_estimators=5, random_state=0).fit(frame, y)
    runtime = SklearnRuntime(make_spec(tmp_path, "capped", "sklearn", b"", infer_signature(frame, est)), b"")
    runtime.model, runtime._feature_names = est, list(frame.columns)
    assert runtime._forest_fast_path(list(frame.columns)) is None


def test_estimator_fitted_on_an_array_gets_a_matrix_in_signature_order(
    tmp_path: Path, settings: FleetSettings
) -> None:
    built = array_model(tmp_path)
    runtime = load_model(built.spec, settings)
    expected = built.estimator.predict(built.frame.head(5).to_numpy())
    assert runtime.predict(built.rows(5)) == pytest.approx(list(expected))


def test_onnx_and_sklearn_agree_on_the_same_model(tmp_path: Path, settings: FleetSettings) -> None:
    built = logistic_model(tmp_path)
    onnx_spec = onnx_of(tmp_path, built)
    sk = load_model(built.spec, settings)
    onnx = load_model(onnx_spec, settings)
    assert isinstance(onnx, OnnxRuntime)
    rows = built.rows(100)
    onnx_predictions = onnx.predict(rows)
    assert onnx_predictions == sk.predict(rows)
    assert all(type(p) is int for p in onnx_predictions)


def test_onnx_with_one_input_per_feature_takes_strings_and_numbers(
    tmp_path: Path, settings: FleetSettings
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    built = category_pipeline(tmp_path)
    onx = convert_sklearn(
        built.estimator,
        initial_types=[
            ("tenure", FloatTensorType([None, 1])),
            ("plan", StringTensorType([None, 1])),
            ("spend", FloatTensorType([None, 1])),
        ],
        options={"zipmap": False},
    )
    spec = make_spec(tmp_path, "churn-onnx", "onnx", onx.SerializeToString(), built.spec.signature)
    runtime = load_model(spec, settings)
    assert runtime.predict(built.rows(50)) == built.expected(50)


def test_python_model_runs_the_publishers_class_with_its_helpers_and_data(
    tmp_path: Path, settings: FleetSettings
) -> None:
    spec = python_model(tmp_path, threshold=10.0)
    runtime = load_model(spec, settings)
    assert runtime.predict([{"amount": 5.0}, {"amount": 50}]) == ["low", "high"]


def test_two_python_versions_with_the_same_module_names_do_not_meet(
    tmp_path: Path, settings: FleetSettings
) -> None:
    low = load_model(python_model(tmp_path, "rules-a", threshold=10.0), settings)
    high = load_model(python_model(tmp_path, "rules-b", threshold=1000.0), settings)
    assert low.predict([{"amount": 50}]) == ["high"]
    assert high.predict([{"amount": 50}]) == ["low"]


def test_python_models_are_refused_when_the_serving_side_disallows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_SERVING_ALLOW_PYTHON", "false")
    with pytest.raises(UntrustedArtifactError, match="FLEET_SERVING_ALLOW_PYTHON"):
        load_model(python_model(tmp_path), FleetSettings())


def test_python_models_are_off_by_default_in_production() -> None:
    production = ServingSettings(mode="production", jwt_secret="x" * 40)
    assert not production.python_allowed
    assert ServingSettings().python_allowed


def test_artifact_whose_bytes_do_not_match_its_sha256_is_refused_before_loading(
    tmp_path: Path, settings: FleetSettings
) -> None:
    built = logistic_model(tmp_path)
    path = Path(built.spec.artifact_uri.removeprefix("file://"))
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError) as caught:
        load_model(built.spec, settings)
    message = str(caught.value)
    assert built.spec.artifact_uri in message and built.spec.sha256 in message
    assert caught.value.actual in message and caught.value.actual != built.spec.sha256


def test_skops_artifact_with_an_untrusted_type_is_refused(tmp_path: Path, settings: FleetSettings) -> None:
    est = HomeMadeClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1])
    built = logistic_model(tmp_path)
    spec = make_spec(tmp_path, "homemade", "sklearn", sio.dumps(est), built.spec.signature)
    with pytest.raises(UntrustedArtifactError, match="HomeMadeClassifier"):
        load_model(spec, settings)


def test_trusting_a_non_library_type_by_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_SERVING_TRUSTED_TYPES", '["builtins.eval"]')
    with pytest.raises(ValueError, match="sklearn/numpy/scipy"):
        ServingSettings()


def test_errors_survive_pickling_across_processes() -> None:
    import pickle

    error = ArtifactIntegrityError("file:///a", "0" * 64, "1" * 64)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ArtifactIntegrityError)
    assert str(copy) == str(error) and copy.expected == "0" * 64


async def test_async_loading_works_inside_an_event_loop(tmp_path: Path, settings: FleetSettings) -> None:
    built = logistic_model(tmp_path)
    runtime = await aload_model(built.spec, settings)
    assert runtime.predict(built.rows(3)) == built.expected(3)
    # The blocking variant may be called from a thread that runs a loop, too.
    assert load_model(built.spec, settings).predict(built.rows(3)) == built.expected(3)
