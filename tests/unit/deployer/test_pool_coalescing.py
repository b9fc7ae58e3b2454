"""Many registrations arriving together cost one pool reconfiguration, not one each.

A bulk onboarding publishes hundreds of ``model.registered`` events at once; the deployer's
consumer hands them over in batches. Applying the pool config takes the same Serve work for one
changed version as for a thousand, so the deployer applies it in rounds (``PoolApplier``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleet_core.events import Topic, make_event, parse_event
from fleet_deployer.events import deployer_consumer
from fleet_deployer.pool_apply import PoolApplier, PoolMetrics
from support.deployer import DeployerHarness, FakeServingControl, registered
from support.registry_double import RegistryDouble


def pool_applies(serving: FakeServingControl) -> list[str]:
    return [keys for call, keys in serving.calls if call == "apply_pool"]


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
