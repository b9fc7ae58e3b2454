"""ONNX models run by onnxruntime on CPU; the first graph output is the prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleet_core.schemas import JsonValue
from fleet_core.serving import ModelSpec
from fleet_serving.errors import ModelLoadError, PredictionError
from fleet_serving.runtimes.base import Rows, Runtime, predictions_to_json

_TENSOR_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxRuntime(Runtime):
    """Either one tensor input (rows x features, signature order) or one input per feature."""

    flavor = "onnx"

    def __init__(self, spec: ModelSpec, artifact: bytes) -> None:
        super().__init__(spec, artifact)
        self.session: Any = None
        self._inputs: list[tuple[str, Any]] = []
        self._per_feature = False
        self._output = ""

    def _load(self, artifact: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Replicas share a node with other models: one thread each keeps them from fighting.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise ModelLoadError(f"{self.spec.key}: onnxruntime could not load the model: {exc}") from exc
        graph_inputs = self.session.get_inputs()
        names = self.input_names
        for gi in graph_inputs:
            if gi.type not in _TENSOR_DTYPES:
                raise ModelLoadError(f"{self.spec.key}: unsupported ONNX input type {gi.type} ({gi.name})")
        by_name = {gi.name: gi for gi in graph_inputs}
        if len(graph_inputs) > 1 or (len(names) == 1 and graph_inputs[0].name == names[0]):
            missing = [n for n in names if n not in by_name]
            extra = [n for n in by_name if n not in names]
            if missing or extra:
                raise ModelLoadError(
                    f"{self.spec.key}: ONNX inputs {sorted(by_name)} do not match the signature "
                    f"inputs {names}"
                )
            self._per_feature = True
            self._inputs = [(n, _TENSOR_DTYPES[by_name[n].type]) for n in names]
        else:
            gi = graph_inputs[0]
            width = gi.shape[-1] if gi.shape else None
            if isinstance(width, int) and width != len(names):
                raise ModelLoadError(
                    f"{self.spec.key}: the ONNX input {gi.name} takes {width} features, "
                    f"the signature has {len(names)}"
                )
            self._inputs = [(gi.name, _TENSOR_DTYPES[gi.type])]
        self._output = self.session.get_outputs()[0].name

    def _column(self, name: str, dtype: Any, rows: Rows) -> np.ndarray:
        values = [row.get(name) for row in rows]
        if dtype is np.object_:
            return np.asarray([["" if v is None else str(v)] for v in values], dtype=object)
        return np.asarray([[np.nan if v is None else v] for v in values], dtype=dtype)

    def _predict(self, rows: Rows) -> list[JsonValue]:
        try:
            if self._per_feature:
                feeds = {n: self._column(n, dt, rows) for n, dt in self._inputs}
            else:
                name, dtype = self._inputs[0]
                cols = self.input_names
                feeds = {
                    name: np.asarray(
                        [[np.nan if r.get(c) is None else r.get(c) for c in cols] for r in rows], dtype=dtype
                    )
                }
            (out,) = self.session.run([self._output], feeds)
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument, or numpy conversion errors
            raise PredictionError(f"{self.spec.key}: the model refused the input: {exc}") from exc
        if isinstance(out, np.ndarray) and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return predictions_to_json(out)
