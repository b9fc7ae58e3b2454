"""The runtime base class: one loaded model version behind ``load()`` and ``predict(rows)``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from fleet_core.schemas import JsonValue
from fleet_core.serving import ModelSpec

Rows = Sequence[dict[str, JsonValue]]


class Runtime(ABC):
    """One model version, loaded from its verified artifact bytes (MLServer's ``MLModel`` shape).

    ``load()`` turns the bytes into a model once; ``predict(rows)`` is then called many times with
    rows already validated against ``spec.signature`` and returns one JSON-able value per row.
    Both are blocking: async callers run them in a thread.
    """

    flavor: str = ""

    def __init__(self, spec: ModelSpec, artifact: bytes) -> None:
        self.spec = spec
        self._artifact: bytes | None = artifact
        self.ready = False

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.spec.signature.inputs]

    def load(self) -> None:
        """Deserialise the artifact; the bytes are dropped afterwards."""
        if self.ready:
            return
        if self._artifact is None:
            raise RuntimeError(f"{self.spec.key}: artifact bytes already released")
        self._load(self._artifact)
        self._artifact = None
        self.ready = True

    @abstractmethod
    def _load(self, artifact: bytes) -> None: ...

    def predict(self, rows: Rows) -> list[JsonValue]:
        """One prediction per row, as plain JSON values."""
        if not self.ready:
            raise RuntimeError(f"{self.spec.key}: predict() before load()")
        if not rows:
            return []
        out = self._predict(rows)
        if len(out) != len(rows):
            raise RuntimeError(f"{self.spec.key}: model returned {len(out)} predictions for {len(rows)} rows")
        return out

    @abstractmethod
    def _predict(self, rows: Rows) -> list[JsonValue]: ...


def to_json(value: Any) -> JsonValue:
    """numpy scalars and arrays as Python values; NaN and infinities as None."""
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value  # type: ignore[no-any-return]


def predictions_to_json(output: Any) -> list[JsonValue]:
    """A model's batch output (array, list, Series, one row per element) as a JSON list."""
    if hasattr(output, "to_numpy"):
        output = output.to_numpy()
    return [to_json(v) for v in output]
