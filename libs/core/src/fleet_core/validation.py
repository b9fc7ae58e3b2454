"""Validate input rows against a model signature; every problem names its field.

Used by the registry (example inputs) and the gateway (requests), so both
reject the same things with the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fleet_core.schemas import FieldSpec, Signature


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


MAX_SHOWN_CHARS = 40


def _shown(spec: FieldSpec, value: Any) -> str:
    """A value as an error message may quote it: never a PII field's, never at length."""
    if spec.pii:
        return "the value"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _check_scalar(spec: FieldSpec, value: Any, where: str) -> FieldProblem | None:
    if value is None:
        return None if spec.nullable else FieldProblem(where, "is required and may not be null")
    if spec.type == "bool":
        if not isinstance(value, bool):
            return FieldProblem(where, f"expected a boolean, got {type(value).__name__}")
        return None
    if spec.type in {"float", "int"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return FieldProblem(where, f"expected a number, got {type(value).__name__}")
        if spec.type == "int" and not float(value).is_integer():
            return FieldProblem(where, f"expected an integer, got {_shown(spec, value)}")
        if isinstance(value, float) and not math.isfinite(value):
            return FieldProblem(where, "must be a finite number")
        if spec.minimum is not None and value < spec.minimum:
            return FieldProblem(where, f"{_shown(spec, value)} is below the minimum {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            return FieldProblem(where, f"{_shown(spec, value)} is above the maximum {spec.maximum}")
        return None
    if spec.type == "string":
        return (
            None
            if isinstance(value, str)
            else FieldProblem(where, f"expected a string, got {type(value).__name__}")
        )
    # category
    allowed = spec.categories or []
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        # str() of a deeply nested list overflows the stack; a category is never a container.
        return FieldProblem(where, f"expected a category value, got {type(value).__name__}")
    if value not in allowed and str(value) not in {str(a) for a in allowed}:
        return FieldProblem(
            where, f"{_shown(spec, value)} is not one of the allowed categories {allowed[:20]}"
        )
    return None


def _check_value(spec: FieldSpec, value: Any, where: str) -> list[FieldProblem]:
    if not spec.shape:
        p = _check_scalar(spec, value, where)
        return [p] if p else []
    if not isinstance(value, list):
        return [FieldProblem(where, f"expected a list of shape {spec.shape}")]
    expected = spec.shape[0]
    if expected != -1 and len(value) != expected:
        return [FieldProblem(where, f"expected {expected} values, got {len(value)}")]
    inner = spec.model_copy(update={"shape": spec.shape[1:] or None})
    problems: list[FieldProblem] = []
    for i, v in enumerate(value):
        problems.extend(_check_value(inner, v, f"{where}[{i}]"))
        if len(problems) >= 10:
            break
    return problems


def validate_rows(
    signature: Signature, rows: list[dict[str, Any]], *, prefix: str = "inputs", max_problems: int = 20
) -> list[FieldProblem]:
    """All problems with ``rows`` (up to ``max_problems``); an empty list means valid."""
    problems: list[FieldProblem] = []
    known = {f.name for f in signature.inputs}
    single = len(rows) == 1
    for i, row in enumerate(rows):
        base = prefix if single else f"{prefix}[{i}]"
        if not isinstance(row, dict):
            problems.append(FieldProblem(base, "expected an object of feature values"))
            continue
        for spec in signature.inputs:
            where = f"{base}.{spec.name}"
            if spec.name not in row:
                if not spec.nullable:
                    problems.append(FieldProblem(where, "is required"))
                continue
            problems.extend(_check_value(spec, row[spec.name], where))
        for extra in sorted(set(row) - known):
            problems.append(FieldProblem(f"{base}.{extra}", "is not in the model's signature"))
        if len(problems) >= max_problems:
            break
    return problems[:max_problems]
