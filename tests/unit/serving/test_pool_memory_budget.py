"""The pool's memory budget as plain logic: bytes charged per model, LRU eviction by bytes (never a
model with a call in flight), the count as a secondary bound, and the budget a sizing derives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleet_core.schemas import FieldSpec, Signature
from fleet_core.serving import (
    BUDGET_HEADROOM,
    MIN_MODEL_BYTES,
    ModelSpec,
    PoolSizing,
    loaded_estimate,
    pool_refusal,
)
from fleet_serving.cache import Eviction, ModelLedger
from fleet_serving.memory import charge, process_rss, release_memory, warm_up

MB = 2**20


def idle(_key: str) -> bool:
    return False


def spec(size_bytes: int, flavor: str = "sklearn", model: str = "big") -> ModelSpec:
    return ModelSpec(
        model=model,
        version=1,
        team="t",
        flavor=flavor,  # type: ignore[arg-type]
        artifact_uri="file:///x/model.skops",
        sha256="0" * 64,
        size_bytes=size_bytes,
        signature=Signature(inputs=[FieldSpec(name="x", type="float")]),
    )


def ledger_with(budget: int | None, loaded: dict[str, int], max_models: int | None = None) -> ModelLedger:
    ledger = ModelLedger(budget, max_models)
    for key, nbytes in loaded.items():
        ledger.loaded(key, nbytes)
    return ledger


def test_a_model_is_charged_the_largest_of_its_rss_delta_its_artifact_and_the_floor() -> None:
    assert charge(5 * MB, 1 * MB) == 5 * MB
    assert charge(0, 3 * MB) == 3 * MB, "an RSS delta of 0 (arenas reused) is floored by the artifact"
    assert charge(-200_000, 700_000) == 700_000, "a negative delta (the GC freed something) too"
    assert charge(None, 10_000) == MIN_MODEL_BYTES, "a tiny model costs at least the floor"


def test_nothing_is_evicted_while_the_incoming_model_fits() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 3 * MB, "b:1": 3 * MB})
    evictions, fits = ledger.plan(["a:1", "b:1"], 4 * MB, idle)
    assert (evictions, fits) == ([], True)


def test_least_recently_used_models_are_evicted_until_the_incoming_bytes_fit() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 3 * MB, "b:1": 3 * MB, "c:1": 3 * MB})
    evictions, fits = ledger.plan(["a:1", "b:1", "c:1"], 5 * MB, idle)
    assert fits
    assert evictions == [Eviction("a:1", 3 * MB, "bytes"), Eviction("b:1", 3 * MB, "bytes")]
    for eviction in evictions:
        ledger.evicted(eviction)
    assert ledger.loaded_bytes == 3 * MB
    assert (ledger.evictions_by_bytes, ledger.evicted_bytes) == (2, 6 * MB)


def test_a_big_model_evicts_many_small_ones_and_a_small_one_evicts_one_big() -> None:
    ledger = ledger_with(10 * MB, {f"s{i}:1": 1 * MB for i in range(8)} | {"big:1": 2 * MB})
    order = [f"s{i}:1" for i in range(8)] + ["big:1"]
    evictions, _ = ledger.plan(order, 6 * MB, idle)
    assert [e.key for e in evictions] == [f"s{i}:1" for i in range(6)]
    ledger = ledger_with(10 * MB, {"big:1": 9 * MB, "s:1": 1 * MB})
    evictions, _ = ledger.plan(["big:1", "s:1"], 1 * MB, idle)
    assert [e.key for e in evictions] == ["big:1"]


def test_a_model_with_a_call_in_flight_is_never_evicted() -> None:
    ledger = ledger_with(10 * MB, {"hot:1": 4 * MB, "cold:1": 4 * MB})
    evictions, fits = ledger.plan(["hot:1", "cold:1"], 4 * MB, lambda k: k == "hot:1")
    assert [e.key for e in evictions] == ["cold:1"] and fits


def test_when_every_other_model_is_busy_the_plan_says_it_does_not_fit() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 5 * MB, "b:1": 5 * MB})
    evictions, fits = ledger.plan(["a:1", "b:1"], 4 * MB, lambda k: True)
    assert (evictions, fits) == ([], False)


def test_the_count_bound_evicts_once_the_bytes_fit() -> None:
    ledger = ledger_with(100 * MB, {"a:1": 1 * MB, "b:1": 1 * MB, "c:1": 1 * MB}, max_models=3)
    evictions, fits = ledger.plan(["a:1", "b:1", "c:1"], 1 * MB, idle)
    assert evictions == [Eviction("a:1", 1 * MB, "count")] and fits
    ledger.evicted(evictions[0])
    assert (ledger.evictions_by_bytes, ledger.evictions_by_count) == (0, 1)


def test_a_sweep_over_budget_evicts_without_an_incoming_model() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 6 * MB, "b:1": 6 * MB})
    assert ledger.over_budget
    evictions, fits = ledger.plan(["a:1", "b:1"], 0, idle, incoming=0)
    assert [e.key for e in evictions] == ["a:1"] and fits


def test_no_budget_means_a_count_bound_only() -> None:
    ledger = ledger_with(None, {"a:1": 900 * MB})
    assert ledger.fits_alone(10**12) and not ledger.over_budget
    assert ledger.plan(["a:1"], 900 * MB, idle) == ([], True)


def test_a_reload_expects_what_the_model_measured_last_time() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 3 * MB})
    ledger.evicted(Eviction("a:1", 3 * MB, "bytes"))
    assert "a:1" not in ledger and ledger.loaded_bytes == 0
    assert ledger.expected("a:1", 1 * MB) == 3 * MB
    assert ledger.expected("never:1", 1 * MB) == 1 * MB


def test_a_refused_model_is_remembered_and_charges_nothing() -> None:
    ledger = ModelLedger(2 * MB)
    ledger.refuse("huge:1", 5 * MB)
    assert ledger.refused == {"huge:1": 5 * MB} and ledger.loaded_bytes == 0
    assert not ledger.fits_alone(5 * MB)


def test_charges_of_models_the_cache_dropped_elsewhere_are_forgotten() -> None:
    ledger = ledger_with(10 * MB, {"a:1": 1 * MB, "b:1": 2 * MB})
    ledger.forget_missing(["b:1"])
    assert ledger.loaded_bytes == 2 * MB


def test_this_process_rss_is_read_and_memory_can_be_released() -> None:
    rss = process_rss()
    assert rss is not None and rss > 10 * MB
    release_memory()


def test_after_the_warm_up_loading_a_small_model_grows_rss_by_little(tmp_path: Path) -> None:
    from fleet_serving.loading import aload_model
    from fleet_serving.settings import ServingSettings
    from support.serving import logistic_model

    settings = ServingSettings(home=tmp_path)
    asyncio.run(warm_up(settings))
    built = logistic_model(tmp_path, model="after-warm-up")
    before = process_rss()
    runtime = asyncio.run(aload_model(built.spec, settings))
    after = process_rss()
    assert before is not None and after is not None
    assert after - before < 2 * MB, "shared code is in the baseline, not in the first model's charge"
    assert runtime.predict(built.rows(3)) == built.expected(3)


def test_the_budget_derives_from_the_memory_reservation_minus_the_empty_replica() -> None:
    sizing = PoolSizing(memory_mb=1536, baseline_mb=360)
    expected = int(1536 * MB * (1 - BUDGET_HEADROOM)) - 360 * MB
    assert sizing.model_budget_bytes == expected
    assert sizing.derived_budget_bytes(400 * MB) == int(1536 * MB * (1 - BUDGET_HEADROOM)) - 400 * MB
    explicit = PoolSizing(memory_mb=1536, model_budget_mb=100)
    assert explicit.model_budget_bytes == explicit.derived_budget_bytes(10**9) == 100 * MB
    assert PoolSizing(memory_mb=None).model_budget_bytes is None


def test_a_reservation_that_leaves_no_room_for_models_is_refused() -> None:
    with pytest.raises(ValidationError, match="memory_mb=380"):
        PoolSizing(memory_mb=380, baseline_mb=360)
    assert PoolSizing(memory_mb=380, baseline_mb=360, model_budget_mb=8).model_budget_bytes == 8 * MB


def test_a_version_whose_loaded_estimate_exceeds_the_budget_is_refused_with_its_reason() -> None:
    budget = 50 * MB
    assert pool_refusal(spec(40 * MB), budget) is None
    reason = pool_refusal(spec(60 * MB), budget)
    assert reason is not None
    assert "big:1" in reason and "dedicated deployment" in reason and "quota" in reason
    # ONNX sessions take several times their graph: a 10 MB graph does not fit a 50 MB budget.
    assert loaded_estimate(spec(10 * MB, "onnx")) == 63 * MB
    assert loaded_estimate(spec(100_000, "onnx")) > 3 * MB, "a session costs MBs whatever its graph"
    assert pool_refusal(spec(10 * MB, "onnx"), budget) is not None
    assert pool_refusal(spec(10**12), None) is None
