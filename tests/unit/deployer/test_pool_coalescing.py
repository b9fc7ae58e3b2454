"""Many registrations arriving together cost one pool reconfiguration, not one each.

A bulk onboarding publishes hundreds of ``model.registered`` events at once; the deployer's
consumer hands them over in batches. Applying the pool config takes the same Serve work for one
changed version as for a thousand, so the deployer applies it in rounds (``PoolApplier``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from fleet_core.events import ModelRegistered, Topic, make_event, parse_event
from fleet_deployer.events import deployer_consumer
from fleet_deployer.pool_apply import PoolApplier, PoolMetrics
from support.deployer import DeployerHarness, FakeServingControl, registered
from support.registry_double import RegistryDouble


def pool_applies(serving: FakeServingControl) -> list[str]:
    return [keys for call, keys in serving.calls if call == "apply_pool"]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def announced(registry: RegistryDouble, names: list[str]) -> list[tuple[str, ModelRegistered]]:
    """``model.registered`` for each name (policy direct), known to the registry."""
    events = []
    for name in names:
        data = registered(name, 1, deploy_policy="direct")
        registry.add(data)
        events.append((make_event(Topic.MODEL_REGISTERED, data, source="/registry").id, data))
    return events


async def phases(deployer: DeployerHarness) -> list[str]:
    page = (await deployer.client.get("/v1/rollouts?limit=500", headers=deployer.auth())).json()
    return sorted(r["phase"] for r in page["items"])


async def test_a_batch_of_200_registrations_reconfigures_the_pool_once(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    events = []
    for i in range(200):
        data = registered(f"m{i:03d}", 1, deploy_policy="direct", team=f"team{i % 20}")
        registry.add(data)
        events.append(make_event(Topic.MODEL_REGISTERED, data, source="/registry"))
    consumer = deployer_consumer("127.0.0.1:1", deployer.controller, deployer.tokens)

    await consumer.handlers[Topic.MODEL_REGISTERED](
        [parse_event(Topic.MODEL_REGISTERED, e.to_bytes()) for e in events]
    )
    await deployer.controller.idle()  # recorded when the handler returns, deployed in the background

    applies = pool_applies(serving)
    assert len(applies) == 1
    assert len(applies[0].split(",")) == 200
    listing = (await deployer.client.get("/v1/deployments?limit=500", headers=deployer.auth())).json()
    assert listing["total"] == 200 and {d["state"] for d in listing["items"]} == {"ready"}
    routes = (await deployer.client.get("/v1/routes", headers=deployer.auth())).json()["models"]
    assert {r["model"] for r in routes} == {f"m{i:03d}" for i in range(200)}
    metrics = (await deployer.client.get("/metrics")).text
    assert 'fleet_deployer_pool_applies_total{outcome="ok"} 1.0' in metrics


async def test_one_unknown_version_in_a_batch_fails_only_itself(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    good = [registered(f"ok{i}", 1, deploy_policy="direct") for i in range(5)]
    for data in good:
        registry.add(data)
    forged = registered("ghost", 1, deploy_policy="direct")  # the registry has never heard of it
    events = [
        make_event(Topic.MODEL_REGISTERED, d, source="/registry") for d in [*good[:2], forged, *good[2:]]
    ]

    with pytest.raises(Exception, match="ghost"):
        await deployer.controller.on_models_registered([(e.id, e.data) for e in events])

    assert len(pool_applies(serving)) == 1
    served = {
        r["model"]
        for r in (await deployer.client.get("/v1/routes", headers=deployer.auth())).json()["models"]
    }
    assert served == {f"ok{i}" for i in range(5)}
    # The consumer's per-event retry redoes the batch one by one: the five are not deployed twice.
    for e in events[:2]:
        assert await deployer.controller.on_model_registered(e.id, e.data) is None
    assert len(pool_applies(serving)) == 1


async def test_a_failed_round_fails_its_versions_and_the_next_round_is_fresh(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    serving.fail_next = "Ray is away"
    first = [registered(f"a{i}", 1, deploy_policy="direct") for i in range(3)]
    for data in first:
        registry.add(data)
    done = await deployer.controller.on_models_registered(
        [(make_event(Topic.MODEL_REGISTERED, d, source="/r").id, d) for d in first]
    )
    assert [r.phase for r in done] == ["failed"] * 3
    assert all("Ray is away" in (r.reason or "") for r in done)

    data = registered("b0", 1, deploy_policy="direct")
    registry.add(data)
    rollout = await deployer.controller.on_model_registered("e-b0", data)
    assert rollout is not None and rollout.phase == "promoted"
    assert len(pool_applies(serving)) == 2


async def test_callers_that_arrive_while_a_round_runs_share_the_next_round() -> None:
    applied: list[float] = []
    gate = asyncio.Event()

    async def apply() -> None:
        applied.append(time.monotonic())
        if len(applied) == 1:
            await gate.wait()

    applier = PoolApplier(apply, metrics=PoolMetrics(None))
    first = asyncio.create_task(applier.ensure())
    await asyncio.sleep(0.01)
    assert len(applied) == 1  # running, held at the gate
    later = [asyncio.create_task(applier.ensure()) for _ in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *later)

    assert len(applied) == 2  # the running round, then one shared round for the 50
    # A change committed before the newest round started needs nothing more.
    await applier.ensure(committed_at=applied[1] - 0.001)
    assert len(applied) == 2
    # One committed after it does.
    await applier.ensure()
    assert len(applied) == 3


async def test_a_round_error_reaches_every_caller_of_that_round() -> None:
    calls = 0

    async def apply() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise RuntimeError("first round broke")

    applier = PoolApplier(apply)
    results = await asyncio.gather(*(applier.ensure() for _ in range(5)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    await applier.ensure()
    assert calls == 2


async def test_the_consumer_records_the_next_batch_while_a_pool_round_runs(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    serving.hold = threading.Event()
    first, second = announced(registry, [f"a{i}" for i in range(30)]), announced(registry, ["b0", "b1"])

    await deployer.controller.on_models_registered(first, wait=False)
    await until(lambda: len(pool_applies(serving)) == 1)  # the first batch's round, held
    # The handler returns once its batch is recorded: the next one is taken meanwhile.
    await asyncio.wait_for(deployer.controller.on_models_registered(second, wait=False), 5)
    assert len(pool_applies(serving)) == 1
    serving.hold.set()
    await deployer.controller.idle()

    applies = pool_applies(serving)
    assert len(applies) == 2 and len(applies[1].split(",")) == 32
    assert await phases(deployer) == ["promoted"] * 32


async def test_reconcile_leaves_a_batch_under_way_to_the_batch(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    """Reconcile finds the batch's rollouts unstarted while their round runs; deploying them itself,
    one round each, is how 999 models once cost 176 pool reconfigurations."""
    serving.hold = threading.Event()
    await deployer.controller.on_models_registered(
        announced(registry, [f"m{i}" for i in range(40)]), wait=False
    )
    await until(lambda: len(pool_applies(serving)) == 1)
    reconciling = asyncio.create_task(deployer.controller.reconcile())
    await asyncio.sleep(0.2)
    serving.hold.set()
    await reconciling
    await deployer.controller.idle()

    assert len(pool_applies(serving)) == 1
    assert await phases(deployer) == ["promoted"] * 40


async def test_rollouts_left_unstarted_resume_together_with_one_pool_round(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    """Rollouts recorded while reconcile's own pool round runs (after it read the deployments) are
    found unstarted next; resuming them one round each cost a round per model."""
    controller = deployer.controller
    await controller.on_models_registered(announced(registry, ["seed"]))  # a pool to reconcile
    serving.hold = threading.Event()
    async with controller.store.transaction() as s:  # a deployment reconcile will re-apply
        await controller.store.set_deployment_state(s, "seed", 1, "deploying", None)
    reconciling = asyncio.create_task(controller.reconcile())
    await until(lambda: len(pool_applies(serving)) == 2)  # reconcile's round, held
    for _, data in announced(registry, [f"r{i}" for i in range(25)]):
        known = await controller.resolve(data.model, 1)
        async with controller.store.transaction() as s:  # recorded, then a "crash" before deploying
            await controller._begin(s, known, None, "direct", "direct", "alice", "deploy", None)
    serving.hold.set()
    await reconciling

    assert len(pool_applies(serving)) == 3  # the seed's, reconcile's, one for the 25
    assert await phases(deployer) == ["promoted"] * 26


async def test_a_redelivered_batch_asks_the_registry_nothing(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    events = announced(registry, [f"d{i}" for i in range(10)])
    await deployer.controller.on_models_registered(events)
    lookups = registry.lookups

    assert await deployer.controller.on_models_registered(events) == []

    assert registry.lookups == lookups and len(pool_applies(serving)) == 1


async def test_a_round_after_a_long_one_gathers_arrivals_for_as_long_as_that_one_took() -> None:
    """A round applies the whole pool, so it grows with the pool: under a steady trickle the wait
    before the next round grows with it (Serve busy at most half the time), not a fixed 3 s."""
    spans: list[tuple[float, float]] = []

    async def apply() -> None:
        started = time.monotonic()
        await asyncio.sleep(0.3 if not spans else 0.01)
        spans.append((started, time.monotonic()))

    applier = PoolApplier(apply, settle_s=0.05, max_settle_s=0.05)
    waiting = [asyncio.create_task(applier.ensure())]
    for _ in range(80):  # a caller every 10 ms for 0.8 s: never quiet for settle_s
        await asyncio.sleep(0.01)
        waiting.append(asyncio.create_task(applier.ensure()))
    await asyncio.gather(*waiting)

    assert len(spans) >= 2
    first_ended, second_started = spans[0][1], spans[1][0]
    assert second_started - first_ended >= 0.25  # ~0.3 s, the first round's length; 0.05 before
