"""Rows checked against a signature name the field and say why; reference profiles summarise
training data faithfully."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fleet_core.profile import reference_profile
from fleet_core.schemas import FieldSpec, Signature
from fleet_core.validation import validate_rows

SIG = Signature(
    inputs=[
        FieldSpec(name="age", type="int", minimum=0, maximum=120),
        FieldSpec(name="plan", type="category", categories=["basic", "pro"]),
        FieldSpec(name="score", type="float"),
        FieldSpec(name="active", type="bool"),
        FieldSpec(name="note", type="string", nullable=True),
        FieldSpec(name="embedding", type="float", shape=[3]),
    ]
)
GOOD: dict[str, Any] = {
    "age": 30,
    "plan": "pro",
    "score": 0.5,
    "active": True,
    "note": None,
    "embedding": [0.1, 0.2, 0.3],
}


def test_valid_rows_have_no_problems() -> None:
    assert validate_rows(SIG, [GOOD, {**GOOD, "age": 0, "plan": "basic"}]) == []
    without_nullable = {k: v for k, v in GOOD.items() if k != "note"}
    assert validate_rows(SIG, [without_nullable]) == []


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        pytest.param({"score": "high"}, "inputs.score", "expected a number", id="wrong-type"),
        pytest.param({"active": 1}, "inputs.active", "expected a boolean", id="number-for-bool"),
        pytest.param({"age": True}, "inputs.age", "expected a number", id="bool-is-not-a-number"),
        pytest.param({"age": 2.5}, "inputs.age", "expected an integer", id="fraction-for-int"),
        pytest.param({"age": 121}, "inputs.age", "above the maximum 120", id="above-range"),
        pytest.param({"age": -1}, "inputs.age", "below the minimum 0", id="below-range"),
        pytest.param({"score": float("nan")}, "inputs.score", "finite", id="nan"),
        pytest.param({"plan": "gold"}, "inputs.plan", "not one of the allowed categories", id="bad-category"),
        pytest.param({"score": None}, "inputs.score", "may not be null", id="null"),
        pytest.param({"colour": "red"}, "inputs.colour", "not in the model's signature", id="unknown-field"),
        pytest.param({"embedding": [1.0, 2.0]}, "inputs.embedding", "expected 3 values", id="wrong-shape"),
        pytest.param({"embedding": [1.0, "x", 3.0]}, "inputs.embedding[1]", "number", id="bad-element"),
    ],
)
def test_a_problem_names_its_field_and_says_why(change: dict[str, Any], field: str, says: str) -> None:
    problems = validate_rows(SIG, [{**GOOD, **change}])
    assert [p.field for p in problems] == [field]
    assert says in problems[0].message
    assert problems[0].as_dict() == {"field": field, "message": problems[0].message}


def test_a_missing_field_is_named() -> None:
    row = {k: v for k, v in GOOD.items() if k != "score"}
    problems = validate_rows(SIG, [row])
    assert [(p.field, p.message) for p in problems] == [("inputs.score", "is required")]


def test_in_a_batch_problems_name_the_row() -> None:
    problems = validate_rows(SIG, [GOOD, {**GOOD, "age": 200}, "not an object"])  # type: ignore[list-item]
    assert [p.field for p in problems] == ["inputs[1].age", "inputs[2]"]


def test_every_problem_of_a_row_is_reported_not_just_the_first() -> None:
    problems = validate_rows(SIG, [{**GOOD, "age": 130, "plan": "gold", "score": "high", "extra": 1}])
    assert {p.field for p in problems} == {"inputs.age", "inputs.plan", "inputs.score", "inputs.extra"}


def test_the_number_of_problems_reported_is_bounded() -> None:
    rows = [{**GOOD, "age": -1} for _ in range(100)]
    assert len(validate_rows(SIG, rows, max_problems=5)) == 5


# --------------------------------------------------------------------------- reference profiles


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.normal(loc=10.0, scale=2.0, size=1000)
    x[:7] = np.nan  # missing values are counted, not profiled
    plan = np.array(["basic"] * 700 + ["pro"] * 250 + ["team"] * 50)
    return reference_profile(
        {"x": x, "plan": plan},
        categorical={"plan"},
        predictions=(np.nan_to_num(x) > 10).astype(int),
        predictions_categorical=True,
    )


def test_a_numeric_profile_accounts_for_every_row(profile) -> None:  # type: ignore[no-untyped-def]
    num = profile.features["x"]
    assert profile.row_count == 1000
    assert num.kind == "numeric"
    assert (num.count, num.missing) == (993, 7)
    assert sum(num.histogram.counts) == num.count
    assert len(num.histogram.edges) == len(num.histogram.counts) + 1
    assert num.histogram.edges == sorted(num.histogram.edges)
    assert num.histogram.edges[0] == num.minimum and num.histogram.edges[-1] == num.maximum


def test_a_numeric_profile_has_ordered_quantiles_and_the_right_moments(profile) -> None:  # type: ignore[no-untyped-def]
    num = profile.features["x"]
    levels = sorted(num.quantiles, key=float)
    assert levels[0] == "0.01" and levels[-1] == "0.99" and "0.5" in levels
    values = [num.quantiles[q] for q in levels]
    assert values == sorted(values)
    assert num.minimum <= values[0] and values[-1] <= num.maximum
    assert abs(num.mean - 10.0) < 0.3 and abs(num.std - 2.0) < 0.3
    assert len(num.sample) == 500 and all(num.minimum <= v <= num.maximum for v in num.sample)


def test_a_categorical_profile_counts_each_category(profile) -> None:  # type: ignore[no-untyped-def]
    plan = profile.features["plan"]
    assert plan.kind == "categorical"
    assert plan.frequencies == {"basic": 700, "pro": 250, "team": 50}
    assert plan.count == 1000 and plan.missing == 0
    assert set(profile.prediction.frequencies) == {"0", "1"}
    assert sum(profile.prediction.frequencies.values()) == 1000


def test_a_profile_survives_json() -> None:
    p = reference_profile({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}, categorical={"c"})
    assert type(p).model_validate_json(p.model_dump_json()) == p


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        reference_profile({"a": [1.0, 2.0], "b": [1.0]})


def test_a_constant_column_still_gets_a_histogram() -> None:
    num = reference_profile({"x": [5.0] * 20}).features["x"]
    assert sum(num.histogram.counts) == 20 and num.std == 0.0
