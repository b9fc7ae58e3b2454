"""Real models for serving tests: fitted sklearn estimators, their skops and ONNX artifacts, and
python-flavor archives, written to a directory and described by ``ModelSpec``s."""

from __future__ import annotations

import hashlib
import io
import textwrap
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio

from fleet_core.events import RouteArm, RouteTable
from fleet_core.schemas import FieldSpec, Flavor, Signature
from fleet_core.serving import (
    POOL_APP,
    POOL_DEPLOYMENT,
    ModelRoute,
    ModelSpec,
    Placement,
    PoolConfig,
    RoutesSnapshot,
    ServedVersion,
)
from fleet_sdk.sklearn import as_frame, infer_signature
from fleet_serving.catalog import PoolCatalogRef
from fleet_serving.catalog import encode as encode_catalog


@dataclass
class BuiltModel:
    spec: ModelSpec
    estimator: Any
    frame: pd.DataFrame

    def rows(self, n: int = 5) -> list[dict[str, Any]]:
        return [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in self.frame.head(n).to_dict("records")
        ]

    def expected(self, n: int = 5) -> list[Any]:
        return [v.item() if hasattr(v, "item") else v for v in self.estimator.predict(self.frame.head(n))]


def store_artifact(directory: Path, filename: str, data: bytes) -> tuple[str, str]:
    """Write content-addressed bytes as the registry does; returns (file:// URI, sha256)."""
    sha = hashlib.sha256(data).hexdigest()
    path = directory / "models" / sha / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri(), sha


def make_spec(
    directory: Path,
    model: str,
    flavor: Flavor,
    data: bytes,
    signature: Signature,
    *,
    version: int = 1,
    task: str = "classification",
) -> ModelSpec:
    filename = {"sklearn": "model.skops", "onnx": "model.onnx", "python": "model.zip"}[flavor]
    uri, sha = store_artifact(directory / model, filename, data)
    return ModelSpec(
        model=model,
        version=version,
        team="test",
        flavor=flavor,
        task=task,  # type: ignore[arg-type]
        artifact_uri=uri,
        sha256=sha,
        size_bytes=len(data),
        signature=signature,
    )


def numeric_frame(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sepal": rng.normal(5.0, 1.0, n),
            "petal": rng.normal(2.0, 0.5, n),
            "width": rng.normal(1.0, 0.3, n),
        }
    )
    y = (frame["sepal"] + 2 * frame["petal"] - frame["width"] > 8).astype(int).to_numpy()
    return frame, y


def logistic_model(directory: Path, model: str = "iris", version: int = 1, seed: int = 0) -> BuiltModel:
    """A LogisticRegression fitted on a DataFrame, as ``fleet_sdk.register_sklearn`` registers it."""
    from sklearn.linear_model import LogisticRegression

    frame, y = numeric_frame(seed=seed)
    est = LogisticRegression().fit(frame, y)
    spec = make_spec(
        directory, model, "sklearn", sio.dumps(est), infer_signature(frame, est), version=version
    )
    return BuiltModel(spec, est, frame)


def category_pipeline(directory: Path, model: str = "churn") -> BuiltModel:
    """A pipeline with a one-hot encoded string column next to scaled numbers."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 60, n),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "spend": rng.normal(50, 20, n),
        }
    )
    y = np.where((frame["plan"] == "basic") & (frame["tenure"] < 20), "churn", "stay")
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "spend"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    est = Pipeline([("pre", pre), ("clf", RandomForestClassifier(n_estimators=10, random_state=0))]).fit(
        frame, y
    )
    spec = make_spec(directory, model, "sklearn", sio.dumps(est), infer_signature(frame, est))
    return BuiltModel(spec, est, frame)


def array_model(directory: Path, model: str = "plain") -> BuiltModel:
    """An estimator fitted on a bare array: the SDK names its columns f0, f1, ..."""
    from sklearn.linear_model import Ridge

    frame, _ = numeric_frame()
    X = frame.to_numpy()
    est = Ridge().fit(X, X[:, 0] * 2 + X[:, 1])
    named = as_frame(X)
    spec = make_spec(
        directory, model, "sklearn", sio.dumps(est), infer_signature(named, est), task="regression"
    )
    return BuiltModel(spec, est, named)


def onnx_of(directory: Path, built: BuiltModel, model: str = "iris-onnx") -> ModelSpec:
    """The same fitted estimator converted with skl2onnx (one float tensor input)."""
    from skl2onnx import to_onnx

    onx = to_onnx(built.estimator, built.frame.to_numpy(dtype=np.float32)[:1], options={"zipmap": False})
    return make_spec(directory, model, "onnx", onx.SerializeToString(), built.spec.signature)


PYTHON_MODEL = """
from . import rules


class Model:
    def load(self):
        self.threshold = float((self.artifact_dir / "threshold.txt").read_text())

    def predict(self, rows):
        return [rules.label(row["amount"], self.threshold) for row in rows]
"""

PYTHON_RULES = """
def label(amount, threshold):
    return "high" if amount > threshold else "low"
"""


def python_archive(threshold: float = 100.0, model_py: str = PYTHON_MODEL) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model.py", textwrap.dedent(model_py))
        zf.writestr("rules.py", textwrap.dedent(PYTHON_RULES))
        zf.writestr("threshold.txt", str(threshold))
    return buf.getvalue()


def python_model(directory: Path, model: str = "rules", threshold: float = 100.0) -> ModelSpec:
    signature = Signature(
        inputs=[FieldSpec(name="amount", type="float")],
        outputs=[FieldSpec(name="prediction", type="category", categories=["high", "low"])],
    )
    return make_spec(directory, model, "python", python_archive(threshold), signature, task="other")


def pool_routes(app: str, spec: ModelSpec) -> RoutesSnapshot:
    """The route snapshot a gateway needs to send all of ``spec``'s traffic to the pool ``app``."""
    placement = Placement(kind="pool", app=app, deployment=POOL_DEPLOYMENT)
    return RoutesSnapshot(
        models=[
            ModelRoute(
                model=spec.model,
                team=spec.team,
                table=RouteTable(
                    model=spec.model, revision=1, arms=[RouteArm(version=spec.version, weight=100)]
                ),
                versions=[ServedVersion(spec=spec, placement=placement, state="ready")],
            )
        ],
        generated_at=datetime.now(UTC),
    )


def catalog_ref(config: PoolConfig, app: str = POOL_APP) -> PoolCatalogRef:
    """What the pool's ``user_config`` holds for ``config`` (not published: for building apps)."""
    return encode_catalog(config, app)[0]
