"""Turning validated JSON rows into the model input a flavor needs, in signature input order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fleet_core.schemas import FieldSpec, Signature
from fleet_serving.runtimes.base import Rows


def _column(field: FieldSpec, values: list[object]) -> pd.Series:
    if field.shape is not None:
        return pd.Series(values, dtype="object", name=field.name)
    if field.type in {"string", "category"}:
        # As strings, the way the training frame held them (object dtype), so encoders match.
        return pd.Series([None if v is None else str(v) for v in values], dtype="object", name=field.name)
    series = pd.Series(values, name=field.name)
    if field.type == "float":
        return series.astype("float64")
    if field.type == "int":
        # A nullable int column with a missing value becomes float NaN, as sklearn expects.
        return series.astype("float64") if series.isna().any() else series.astype("int64")
    if field.type == "bool":
        return series.astype("float64") if series.isna().any() else series.astype("bool")
    return series


def rows_to_frame(signature: Signature, rows: Rows) -> pd.DataFrame:
    """A DataFrame with exactly the signature's input columns, in signature order."""
    return pd.DataFrame(
        {f.name: _column(f, [row.get(f.name) for row in rows]) for f in signature.inputs},
        columns=[f.name for f in signature.inputs],
    )


def rows_to_matrix(signature: Signature, rows: Rows, dtype: type = np.float32) -> np.ndarray:
    """A numeric (rows x inputs) matrix in signature order; missing values are NaN."""
    names = [f.name for f in signature.inputs]
    data = [[np.nan if row.get(n) is None else row.get(n) for n in names] for row in rows]
    try:
        return np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"inputs {names} are not all numeric: {exc}") from exc
