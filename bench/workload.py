"""The benchmarked model and request: a logistic regression over 8 float features on synthetic data.

Every target (plain FastAPI, Ray Serve's proxy, the ModelFleet gateway) serves this same model with
the very runtime the fleet's replicas use (``fleet_serving``'s ``SklearnRuntime`` loaded from the
same skops bytes), so each does the same per-request model work and only the serving path differs.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

N_FEATURES = 8
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


def training_data(seed: int = 0, n: int = 2_000) -> tuple[pd.DataFrame, np.ndarray]:
    """Two Gaussian blobs, linearly separable enough for a meaningful logistic regression."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n, n_features=N_FEATURES, n_informative=5, n_redundant=1, random_state=seed
    )
    return pd.DataFrame(X, columns=FEATURES), y


def train_model(seed: int = 0) -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = training_data(seed)
    return LogisticRegression(max_iter=500).fit(X, y)


def example_row(seed: int = 0) -> dict[str, float]:
    X, _ = training_data(seed, n=50)
    return {k: round(float(v), 6) for k, v in X.iloc[0].items()}


def request_body(seed: int = 0) -> str:
    """The inference body every HTTP target receives: one row as an Open Inference Protocol tensor,
    ``FP64`` of shape ``[1, 8]`` with the columns in the training order -- what MLServer's sklearn
    runtime decodes (NumPy codec) and what the gateway maps onto the model's signature."""
    row = example_row(seed)
    tensor = {
        "name": "input-0",
        "shape": [1, N_FEATURES],
        "datatype": "FP64",
        "data": [row[f] for f in FEATURES],
    }
    return json.dumps({"inputs": [tensor]})


def _tensor(seed: int) -> dict[str, Any]:
    tensor: dict[str, Any] = json.loads(request_body(seed))["inputs"][0]
    return tensor


def binary_request_body(seed: int = 0) -> tuple[bytes, dict[str, str]]:
    """``request_body``'s tensor in Triton's binary tensor extension, and the headers that frame it:
    the JSON header names the tensor with ``parameters.binary_data_size`` instead of ``data``, the
    64 bytes after it are the 8 values as little-endian FP64, ``Inference-Header-Content-Length``
    is the JSON header's length (what ``tritonclient.http`` sends by default). Outputs stay JSON."""
    from fleet_core.tensor_bytes import encode_tensor_bytes

    tensor = _tensor(seed)
    raw = encode_tensor_bytes(tensor["datatype"], tensor.pop("data"))
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def grpc_infer_request(model: str, seed: int = 0) -> bytes:
    """``request_body``'s tensor as a serialised OIP ``ModelInferRequest`` for ``model``, its values
    in ``raw_input_contents`` (what ``tritonclient.grpc`` sends)."""
    from fleet_core.tensor_bytes import encode_tensor_bytes
    from fleet_gateway.grpc_gen import grpc_predict_v2_pb2 as pb

    tensor = _tensor(seed)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    request.raw_input_contents.append(encode_tensor_bytes(tensor["datatype"], tensor["data"]))
    return request.SerializeToString()


def rows_from_body(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a request body: one ``[rows, features]`` tensor (``request_body``), a row or a list
    of rows."""
    inputs = body["inputs"]
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) and "datatype" in inputs[0]:
        tensor = inputs[0]
        n, width = tensor["shape"]
        data = tensor["data"]
        return [dict(zip(FEATURES, data[i * width : (i + 1) * width], strict=True)) for i in range(n)]
    return as_rows(inputs)


def fleet_runtime(seed: int = 0) -> Any:
    """``train_model`` as a fleet replica holds it: skops bytes loaded by ``SklearnRuntime``."""
    import hashlib

    import skops.io as sio

    from fleet_core.schemas import FieldSpec, Signature
    from fleet_core.serving import ModelSpec
    from fleet_serving.runtimes.sklearn import SklearnRuntime

    data = sio.dumps(train_model(seed))
    spec = ModelSpec(
        model="bench",
        version=1,
        team="bench",
        flavor="sklearn",
        task="classification",
        artifact_uri="file:///bench/model.skops",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        signature=Signature(inputs=[FieldSpec(name=f) for f in FEATURES]),
        example_input=[example_row(seed)],
    )
    runtime = SklearnRuntime(spec, data)
    runtime.load()
    return runtime


def predict_rows(runtime: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """The model work of one request, exactly as a fleet replica does it."""
    return runtime.predict(rows)  # type: ignore[no-any-return]


def as_rows(inputs: Any) -> list[dict[str, Any]]:
    return inputs if isinstance(inputs, list) else [inputs]
