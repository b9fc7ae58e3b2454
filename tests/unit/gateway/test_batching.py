"""Adaptive micro-batching: concurrent requests to one version share a model call, each gets its
own answer in order, one request's failure stays its own, and a lone request is sent at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fleet_core.errors import InvalidInput
from fleet_core.events import BatchSettings, RouteArm
from fleet_core.serving import Placement, ServedVersion
from fleet_gateway.backend import ModelUnavailable
from fleet_gateway.batching import BatchingBackend, BatchMetrics, BatchPolicy
from support.gateway import route, running_gateway, snapshot, spec

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


@dataclass
class EchoModel:
    """Predicts ``age * 2`` for each row after ``delay_s``; refuses rows with ``age == 99`` (as a
    model refusing a value does) or fails as told. Records every call's rows."""

    delay_s: float = 0.02
    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    fail_with: Exception | None = None
    running: int = 0
    most_running: int = 0

    async def start(self) -> None:
        """In memory: nothing to connect to."""

    async def close(self) -> None:
        """In memory: nothing to release."""

    async def ready(self) -> tuple[bool, str]:
        return True, "echo"

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        self.calls.append(rows)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail_with is not None:
                raise self.fail_with
            if any(r["age"] == 99 for r in rows):
                raise InvalidInput(f"{served.spec.key}: age 99 is out of the model's range", field="age")
            return [r["age"] * 2 for r in rows]
        finally:
            self.running -= 1


def served(model: str = "churn", version: int = 1) -> ServedVersion:
    return ServedVersion(spec=spec(model, version), placement=Placement.pool(), state="ready")


def batcher(model: EchoModel, policy: BatchPolicy) -> tuple[BatchingBackend, BatchMetrics]:
    metrics = BatchMetrics(CollectorRegistry())
    return BatchingBackend(model, metrics, lambda s: policy), metrics


async def test_concurrent_requests_share_calls_and_each_gets_its_own_rows_back_in_order() -> None:
    model = EchoModel()
    backend, metrics = batcher(model, BatchPolicy(max_rows=64, max_delay_ms=50, max_inflight=1))
    version = served()
    requests = [[{"age": 1000 * i + j} for j in range(1 + i % 3)] for i in range(30)]
    answers = await asyncio.gather(*(backend.predict(version, rows) for rows in requests))
    for rows, answer in zip(requests, answers, strict=True):
        assert answer == [r["age"] * 2 for r in rows]
    assert len(model.calls) < len(requests) / 3, [len(c) for c in model.calls]
    assert sum(len(c) for c in model.calls) == sum(len(r) for r in requests)
    flushes = metrics.flush_counts()
    assert flushes["idle"] == 1 and flushes["drained"] + flushes["full"] + flushes["delay"] >= 1
    assert backend.lanes() == 0  # nothing left behind once every call returned


async def test_a_lone_request_is_sent_at_once_never_waiting_for_company() -> None:
    model = EchoModel(delay_s=0.001)
    backend, metrics = batcher(model, BatchPolicy(max_rows=32, max_delay_ms=1000, max_inflight=2))
    version = served()
    for i in range(20):
        assert await backend.predict(version, [{"age": i}]) == [2 * i]
    flushes = metrics.flush_counts()
    assert flushes["idle"] == 20
    assert flushes["delay"] == flushes["drained"] == flushes["full"] == 0
    assert [len(c) for c in model.calls] == [1] * 20


async def test_waiting_rows_are_sent_when_they_fill_a_batch() -> None:
    model = EchoModel(delay_s=0.2)
    backend, metrics = batcher(model, BatchPolicy(max_rows=8, max_delay_ms=10_000, max_inflight=1))
    version = served()
    answers = await asyncio.gather(*(backend.predict(version, [{"age": i}]) for i in range(17)))
    assert answers == [[2 * i] for i in range(17)]
    assert [len(c) for c in model.calls] == [1, 8, 8]
    assert metrics.flush_counts()["full"] == 2


async def test_with_a_call_slot_free_a_request_waits_at_most_max_delay() -> None:
    model = EchoModel(delay_s=0.3)
    backend, metrics = batcher(model, BatchPolicy(max_rows=32, max_delay_ms=5, max_inflight=2))
    version = served()
    first = asyncio.create_task(backend.predict(version, [{"age": 1}]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(backend.predict(version, [{"age": 2}]))
    assert await asyncio.gather(first, second) == [[2], [4]]
    # The second did not wait for the first call to return: both ran at the same time.
    assert model.most_running == 2
    assert metrics.flush_counts()["delay"] == 1


async def test_with_every_call_slot_busy_requests_wait_for_one_to_return() -> None:
    model = EchoModel(delay_s=0.1)
    backend, metrics = batcher(model, BatchPolicy(max_rows=32, max_delay_ms=1, max_inflight=1))
    version = served()
    first = asyncio.create_task(backend.predict(version, [{"age": 1}]))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(backend.predict(version, [{"age": i}])) for i in range(2, 6)]
    assert await first == [2]
    assert [await t for t in rest] == [[2 * i] for i in range(2, 6)]
    assert model.most_running == 1
    assert [len(c) for c in model.calls] == [1, 4]
    assert metrics.flush_counts()["drained"] == 1


async def test_a_request_as_large_as_a_batch_goes_alone() -> None:
    model = EchoModel()
    backend, metrics = batcher(model, BatchPolicy(max_rows=4, max_delay_ms=5, max_inflight=1))
    rows = [{"age": i} for i in range(10)]
    assert await backend.predict(served(), rows) == [2 * i for i in range(10)]
    assert metrics.flush_counts()["large"] == 1


async def test_a_model_refusing_one_request_fails_only_that_request() -> None:
    model = EchoModel(delay_s=0.05)
    backend, metrics = batcher(model, BatchPolicy(max_rows=64, max_delay_ms=50, max_inflight=1))
    version = served()
    requests = [[{"age": 99 if i == 7 else i}] for i in range(12)]
    results = await asyncio.gather(*(backend.predict(version, r) for r in requests), return_exceptions=True)
    for i, result in enumerate(results):
        if i == 7:
            assert isinstance(result, InvalidInput) and result.field == "age"
        else:
            assert result == [2 * i]
    assert metrics.isolations._value.get() >= 1


async def test_an_unavailable_model_fails_the_batch_without_resending_each_request() -> None:
    model = EchoModel(delay_s=0.05, fail_with=ModelUnavailable("churn:1: no replica"))
    backend, metrics = batcher(model, BatchPolicy(max_rows=64, max_delay_ms=50, max_inflight=1))
    version = served()
    results = await asyncio.gather(
        *(backend.predict(version, [{"age": i}]) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ModelUnavailable) for r in results)
    assert metrics.isolations._value.get() == 0
    assert len(model.calls) < 10


async def test_a_model_answering_the_wrong_count_is_caught_per_request() -> None:
    class Short(EchoModel):
        async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
            out = await super().predict(served, rows)
            return out[:-1] if len(rows) > 1 else out

    model = Short(delay_s=0.05)
    backend, _ = batcher(model, BatchPolicy(max_rows=64, max_delay_ms=50, max_inflight=1))
    version = served()
    results = await asyncio.gather(*(backend.predict(version, [{"age": i}]) for i in range(6)))
    assert results == [[2 * i] for i in range(6)]  # each alone again after the short batch


async def test_versions_are_batched_apart() -> None:
    model = EchoModel(delay_s=0.05)
    backend, _ = batcher(model, BatchPolicy(max_rows=64, max_delay_ms=50, max_inflight=1))
    one, two = served("churn", 1), served("churn", 2)
    await asyncio.gather(*(backend.predict(one if i % 2 else two, [{"age": i}]) for i in range(20)))
    keys = {tuple(sorted(r["age"] % 2 for r in call)) for call in model.calls}
    assert all(len(set(k)) == 1 for k in keys)  # no call mixes the two versions' rows


async def test_batching_off_sends_every_request_on_its_own() -> None:
    model = EchoModel(delay_s=0.02)
    backend, metrics = batcher(model, BatchPolicy(max_rows=1))
    await asyncio.gather(*(backend.predict(served(), [{"age": i}]) for i in range(8)))
    assert len(model.calls) == 8
    assert sum(metrics.flush_counts().values()) == 0


@pytest.mark.parametrize("bad_kind", ["validation", "model"])
async def test_over_http_a_bad_request_among_good_ones_gets_its_own_422(bad_kind: str) -> None:
    """Through the gateway: requests in flight together, one with a bad row; it alone fails."""
    model = EchoModel(delay_s=0.05)
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, backend=model, batch_max_rows=64, batch_max_inflight=1) as gw:
        headers = gw.auth()

        async def call(i: int) -> tuple[int, Any]:
            age: Any = i
            if i == 5:
                age = -3 if bad_kind == "validation" else 99  # below the signature's minimum / refused
            r = await gw.client.post(
                "/v2/models/churn/infer", json={"inputs": {**ROW, "age": age}}, headers=headers
            )
            return r.status_code, r.json()

        results = await asyncio.gather(*(call(i) for i in range(16)))
        for i, (status, body) in enumerate(results):
            if i == 5:
                assert status == 422, body
                assert body["field"] == "age" or body["field"].endswith("age"), body
            else:
                assert status == 200, body
                assert body["predictions"] == [2 * i]
        assert max(len(c) for c in model.calls) > 1  # they were batched
        if bad_kind == "validation":  # refused before batching: no call ever saw the bad row
            assert all(r["age"] >= 0 for c in model.calls for r in c)
            assert len(model.calls) < 16
        text = (await gw.client.get("/metrics")).text
        assert "fleet_gateway_batch_rows_bucket" in text
        assert 'fleet_gateway_batch_flushes_total{cause="drained"}' in text


async def test_over_http_batching_can_be_turned_off() -> None:
    model = EchoModel(delay_s=0.02)
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, backend=model, batch_max_rows=1) as gw:
        headers = gw.auth()
        await asyncio.gather(
            *(
                gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=headers)
                for _ in range(6)
            )
        )
        assert len(model.calls) == 6


def test_policy_bounds_are_checked() -> None:
    assert BatchPolicy(max_rows=1).enabled is False
    assert BatchPolicy().enabled is True


async def test_each_model_is_batched_by_its_own_route_table_settings() -> None:
    """``PUT /v1/routes/{model}/batching`` on the deployer reaches the gateway on the route table:
    one model with batching off, one capped at 4 rows, one on the gateway's defaults; a later
    table (as ``rollout.updated`` brings it) changes them at once."""
    model = EchoModel(delay_s=0.05)
    arms = [RouteArm(version=1, weight=100)]
    off, capped, default = (route(name, arms) for name in ("churn", "fraud", "upsell"))
    off.table.batching = BatchSettings(max_rows=1)
    capped.table.batching = BatchSettings(max_rows=4)
    async with running_gateway(
        snapshot(off, capped, default), backend=model, batch_max_rows=64, batch_max_inflight=1
    ) as gw:
        headers = gw.auth()

        async def burst(name: str, n: int = 12) -> list[list[dict[str, Any]]]:
            model.calls.clear()
            replies = await asyncio.gather(
                *(
                    gw.client.post(
                        f"/v2/models/{name}/infer", json={"inputs": {**ROW, "age": i}}, headers=headers
                    )
                    for i in range(n)
                )
            )
            assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
            return list(model.calls)

        assert len(await burst("churn")) == 12, "batching off for this model"
        calls = await burst("fraud")
        assert max(len(c) for c in calls) == 4 and len(calls) >= 3, [len(c) for c in calls]
        assert max(len(c) for c in await burst("upsell")) > 4, "the gateway's default, 64 rows"

        book = gw.app.state.routes
        newer = off.table.model_copy(update={"revision": 2, "batching": None})
        assert book.apply_table(newer)
        assert max(len(c) for c in await burst("churn")) > 1, "a newer table turned it on"
