"""Rows checked against a signature name the field; reference profiles summarise training data."""

from __future__ import annotations

import numpy as np

from fleet_core.profile import reference_profile
from fleet_core.schemas import FieldSpec, Signature
from fleet_core.validation import validate_rows

SIG = Signature(
    inputs=[
        FieldSpec(name="age", type="int", minimum=0, maximum=120),
        FieldSpec(name="plan", type="category", categories=["basic", "pro"]),
        FieldSpec(name="score", type="float"),
    ]
)


def problems(rows):  # type: ignore[no-untyped-def]
    return {(p.field, p.message.split()[0]) for p in validate_rows(SIG, rows)}


def test_valid_rows_have_no_problems() -> None:
    assert validate_rows(SIG, [{"age": 30, "plan": "pro", "score": 0.5}]) == []


def test_each_problem_names_its_field() -> None:
    found = validate_rows(SIG, [{"age": 130, "plan": "gold", "score": "high", "extra": 1}])
    fields = {p.field for p in found}
    assert fields == {"inputs.age", "inputs.plan", "inputs.score", "inputs.extra"}
    missing = validate_rows(SIG, [{"age": 1, "plan": "pro"}, {"age": 2.5, "plan": "pro", "score": 1}])
    assert {p.field for p in missing} == {"inputs[0].score", "inputs[1].age"}


def test_booleans_are_not_numbers() -> None:
    assert [p.field for p in validate_rows(SIG, [{"age": True, "plan": "pro", "score": 1.0}])] == [
        "inputs.age"
    ]


def test_reference_profile_counts_add_up() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    plan = np.array(["basic"] * 700 + ["pro"] * 300)
    profile = reference_profile(
        {"x": x, "plan": plan},
        categorical={"plan"},
        predictions=(x > 0).astype(int),
        predictions_categorical=True,
    )
    num = profile.features["x"]
    assert num.kind == "numeric" and sum(num.histogram.counts) == 1000 == profile.row_count
    qs = [num.quantiles[k] for k in sorted(num.quantiles, key=float)]
    assert qs == sorted(qs) and abs(num.mean) < 0.1 and len(num.sample) == 500
    assert profile.features["plan"].frequencies == {"basic": 700, "pro": 300}
    assert set(profile.prediction.frequencies) == {"0", "1"}
