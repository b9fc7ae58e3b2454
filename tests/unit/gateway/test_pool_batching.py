"""Batching across pool models: concurrent requests for different models that go to the same pool
replica share one call; each model's rows and errors stay its own; models are placed on replicas
as the pool router places them (rendezvous order, the next replica only while one is hot)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from fleet_core.errors import FleetError, InvalidInput
from fleet_core.placement import replica_order
from fleet_core.serving import Placement, ServedVersion
from fleet_gateway.backend import ModelFailed, ModelUnavailable, PoolBackend
from fleet_gateway.batching import BatchingBackend, BatchMetrics, BatchPolicy
from support.gateway import spec

POLICY = BatchPolicy(max_rows=64, max_delay_ms=20, max_inflight=1)


@dataclass
class View:
    names: list[str]
    hot_ongoing: float = 1
    max_replicas_per_model: int = 2

    def replica_names(self) -> list[str]:
        return self.names


@dataclass
class FakePool:
    """Pool replicas in memory: each model predicts ``age * 10 + version``; a model refuses rows
    with ``age == 99``; ``broken`` models answer the wrong count. Records each call."""

    view: View | None = field(default_factory=lambda: View(["r1", "r2", "r3"]))
    delay_s: float = 0.02
    calls: list[tuple[str, list[tuple[str, int]]]] = field(default_factory=list)
    single: int = 0
    broken: set[str] = field(default_factory=set)
    down: bool = False

    async def start(self) -> None:
        """In memory: nothing to connect to."""

    async def close(self) -> None:
        """In memory: nothing to release."""

    async def ready(self) -> tuple[bool, str]:
        return True, "fake pool"

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        self.single += 1
        await asyncio.sleep(self.delay_s)
        return [r["age"] * 10 + served.spec.version for r in rows]

    def pool_view(self, placement: Placement) -> View | None:
        return self.view

    async def predict_pool(
        self, placement: Placement, replica: str, groups: list[tuple[ServedVersion, list[dict[str, Any]]]]
    ) -> list[list[Any] | FleetError]:
        self.calls.append((replica, [(s.spec.key, len(rows)) for s, rows in groups]))
        await asyncio.sleep(self.delay_s)
        if self.down:
            raise ModelUnavailable("replica unavailable")
        out: list[list[Any] | FleetError] = []
        for served, rows in groups:
            if served.spec.key in self.broken:
                out.append(ModelFailed(f"{served.spec.key} answered 0 predictions"))
            elif any(r["age"] == 99 for r in rows):
                out.append(InvalidInput(f"{served.spec.key}: age 99 is out of range", field="age"))
            else:
                out.append([r["age"] * 10 + served.spec.version for r in rows])
        return out


def version(i: int, *, dedicated: bool = False) -> ServedVersion:
    placement = Placement.dedicated(f"m{i}", 1) if dedicated else Placement.pool()
    return ServedVersion(spec=spec(f"m{i}", 1), placement=placement, state="ready")


def batcher(pool: FakePool, policy: BatchPolicy = POLICY) -> tuple[BatchingBackend, BatchMetrics]:
    metrics = BatchMetrics(CollectorRegistry())
    return BatchingBackend(pool, metrics, lambda s: policy, pool_policy=policy), metrics


def test_the_ray_backend_is_a_pool_backend() -> None:
    from fleet_gateway.backend import RayBackend

    assert isinstance(RayBackend(None), PoolBackend)
    assert isinstance(FakePool(), PoolBackend)


async def test_requests_for_many_models_share_calls_per_replica_each_getting_its_own_answer() -> None:
    pool = FakePool()
    backend, metrics = batcher(pool)
    models = [version(i) for i in range(60)]
    requests = [(models[i % 60], [{"age": 100 + i}, {"age": i + 1000}][: 1 + i % 2]) for i in range(120)]
    answers = await asyncio.gather(*(backend.predict(m, rows) for m, rows in requests))
    for (_, rows), answer in zip(requests, answers, strict=True):
        assert answer == [r["age"] * 10 + 1 for r in rows]
    assert len(pool.calls) < len(requests) / 4, pool.calls
    # each model's rows went to its first replica, or its second while the first had one of its
    # requests (each model is asked twice at once here): never anywhere else
    names = pool.view.names  # type: ignore[union-attr]
    for replica, groups in pool.calls:
        for key, _ in groups:
            model = next(m for m in models if m.spec.key == key)
            assert replica in replica_order(model.spec.key, names)[:2]
    assert max(len(groups) for _, groups in pool.calls) > 5
    assert metrics.models.collect()[0].samples[-1].value > 0  # the models-per-call histogram's sum
    assert pool.single == 0 and backend.lanes() == 0


async def test_one_models_refusal_fails_only_its_own_request_and_neighbours_succeed() -> None:
    pool = FakePool(view=View(["r1", "r2"], hot_ongoing=10))  # every model on its first replica
    backend, metrics = batcher(pool)
    good, bad = version(1), version(2)
    calls = [backend.predict(good, [{"age": i}]) for i in range(5)]
    calls += [
        backend.predict(bad, [{"age": 7}]),
        backend.predict(bad, [{"age": 99}]),
        backend.predict(bad, [{"age": 8}]),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:5] == [[i * 10 + 1] for i in range(5)]
    assert results[5] == [71] and results[7] == [81]
    assert isinstance(results[6], InvalidInput) and results[6].field == "age"
    assert metrics.isolations._value.get() >= 1


async def test_a_model_answering_the_wrong_count_fails_its_requests_not_the_others() -> None:
    pool = FakePool(broken={"m2:1"})
    backend, _ = batcher(pool)
    results = await asyncio.gather(
        *(backend.predict(version(1 + i % 2), [{"age": i}]) for i in range(6)), return_exceptions=True
    )
    assert [r for i, r in enumerate(results) if i % 2 == 0] == [[1], [21], [41]]
    assert all(isinstance(r, ModelFailed) for i, r in enumerate(results) if i % 2 == 1)


async def test_an_unreachable_replica_fails_its_calls_without_resending_each_request() -> None:
    pool = FakePool(down=True)
    backend, _ = batcher(pool)
    results = await asyncio.gather(
        *(backend.predict(version(i), [{"age": i}]) for i in range(12)), return_exceptions=True
    )
    assert all(isinstance(r, ModelUnavailable) for r in results)
    assert len(pool.calls) <= 3 * 2  # at most a call or two per replica lane, no per-request resend


async def test_a_hot_model_spreads_to_its_next_replica_and_no_further() -> None:
    pool = FakePool(view=View(["r1", "r2", "r3", "r4"], hot_ongoing=1, max_replicas_per_model=2))
    backend, _ = batcher(pool)
    hot = version(5)
    order = replica_order(hot.spec.key, pool.view.names)  # type: ignore[union-attr]
    answers = await asyncio.gather(*(backend.predict(hot, [{"age": i}]) for i in range(20)))
    assert answers == [[i * 10 + 1] for i in range(20)]
    used = Counter(replica for replica, _ in pool.calls)
    assert set(used) == set(order[:2]), used


async def test_a_lone_request_goes_at_once() -> None:
    pool = FakePool()
    backend, metrics = batcher(pool)
    assert await backend.predict(version(3), [{"age": 4}]) == [41]
    assert metrics.flush_counts()["idle"] == 1 and sum(metrics.flush_counts().values()) == 1


async def test_without_a_pool_view_or_outside_the_pool_models_are_batched_per_version() -> None:
    pool = FakePool(view=None)
    backend, _ = batcher(pool)
    await asyncio.gather(*(backend.predict(version(i), [{"age": i}]) for i in range(4)))
    assert pool.calls == [] and pool.single == 4
    pool = FakePool()
    backend, _ = batcher(pool)
    await asyncio.gather(*(backend.predict(version(i, dedicated=True), [{"age": i}]) for i in range(4)))
    assert pool.calls == [] and pool.single == 4


async def test_a_model_with_its_own_batching_settings_is_batched_alone_by_them() -> None:
    pool = FakePool()
    metrics = BatchMetrics(CollectorRegistry())
    own = BatchPolicy(max_rows=8, max_delay_ms=1, max_inflight=1)
    backend = BatchingBackend(
        pool, metrics, lambda s: own if s.spec.model == "m1" else POLICY, pool_policy=POLICY
    )
    await asyncio.gather(backend.predict(version(1), [{"age": 1}]), backend.predict(version(2), [{"age": 2}]))
    assert pool.single == 1 and [g for _, groups in pool.calls for g in groups] == [("m2:1", 1)]
