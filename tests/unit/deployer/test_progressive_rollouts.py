"""Progressive delivery in the deployer: canary steps gated by the monitor's verdicts, automatic
rollback on a failing verdict or an anomaly, A/B winners, shadows, blue-green switches, the
commands a person uses, and a restart in the middle of a canary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fleet_core.events import AnomalyDetected, ArmMetrics, RolloutAnalysis
from support.deployer import DeployerHarness, FakeServingControl, running_deployer
from support.registry_double import confirming

FAST = {"step_interval_s": 0.05}


async def start(d: DeployerHarness, strategy: str, version: int = 2, **options: Any) -> dict[str, Any]:
    r = await d.client.post(
        "/v1/rollouts",
        json={"model": "churn", "version": version, "strategy": strategy, **options},
        headers=d.auth(),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def arms(d: DeployerHarness) -> list[tuple[int, float, str]]:
    table = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()["table"]
    return [(a["version"], a["weight"], a["mode"]) for a in table["arms"]]


async def rollout(d: DeployerHarness, rollout_id: str) -> dict[str, Any]:
    return (await d.client.get(f"/v1/rollouts/{rollout_id}", headers=d.auth())).json()


def verdict(r: dict[str, Any], step: int, outcome: str, reason: str = "numbers") -> RolloutAnalysis:
    return RolloutAnalysis(
        rollout_id=r["id"],
        model="churn",
        step=step,
        candidate_version=r["version"],
        baseline_version=1,
        verdict=outcome,
        reason=reason,  # type: ignore[arg-type]
        candidate=ArmMetrics(requests=100, error_rate=0.0),
        baseline=ArmMetrics(requests=900, error_rate=0.0),
    )


async def serving_v1(d: DeployerHarness, *extra: int) -> None:
    await d.register("churn", 1, deploy_policy="direct")
    for version in extra:
        await d.register("churn", version, example_input=[{"x": 1.0}])


async def test_a_canary_advances_only_on_passing_verdicts_and_is_promoted(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "canary", steps=[10, 50, 100], **FAST)
    assert (r["phase"], r["step"]) == ("progressing", 10)
    assert await arms(deployer) == [(1, 90, "primary"), (2, 10, "primary")]
    controller = deployer.controller

    await asyncio.sleep(0.1)
    await controller.progress_tick()
    assert (await rollout(deployer, r["id"]))["step"] == 10, "no verdict yet: the step holds"
    await controller.on_rollout_analysis(verdict(r, 10, "inconclusive"))
    assert (await rollout(deployer, r["id"]))["step"] == 10
    await controller.on_rollout_analysis(verdict(r, 10, "pass"))
    assert await arms(deployer) == [(1, 50, "primary"), (2, 50, "primary")]
    await controller.on_rollout_analysis(verdict(r, 10, "fail"))  # about an earlier step: ignored
    assert (await rollout(deployer, r["id"]))["phase"] == "progressing"

    await asyncio.sleep(0.1)
    await controller.on_rollout_analysis(verdict(r, 50, "pass"))  # the step before 100 %: promotion
    done = await rollout(deployer, r["id"])
    assert (done["phase"], done["step"]) == ("promoted", 100)
    assert await arms(deployer) == [(2, 100, "primary")]
    published = [
        (e.data.phase, e.data.step) for e in await deployer.published() if e.data.rollout_id == r["id"]
    ]
    assert published == [("progressing", 10), ("progressing", 50), ("promoted", 100)]


async def test_a_canary_holds_each_step_for_its_interval(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "canary", steps=[10, 100], step_interval_s=3600)
    await deployer.controller.on_rollout_analysis(verdict(r, 10, "pass"))
    assert await arms(deployer) == [(1, 90, "primary"), (2, 10, "primary")]
    progress = (await rollout(deployer, r["id"]))["progress"]
    assert progress["verdict"]["verdict"] == "pass" and progress["index"] == 0


async def test_a_failing_verdict_rolls_the_canary_back(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "canary", **FAST)
    await deployer.controller.on_rollout_analysis(verdict(r, 5, "fail", "error rate 25.0% against 0.0%"))
    done = await rollout(deployer, r["id"])
    assert done["phase"] == "rolled_back" and "error rate 25.0%" in done["reason"]
    assert await arms(deployer) == [(1, 100, "primary")]


async def test_an_anomaly_on_the_candidate_rolls_the_canary_back(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    await start(deployer, "canary", **FAST)
    anomaly = AnomalyDetected(
        model="churn", version=1, metric="latency", state="firing", value=300, baseline=20, threshold=40
    )
    assert await deployer.controller.on_anomaly_detected(anomaly) is None, (
        "the baseline's anomaly is not the canary's"
    )
    done = await deployer.controller.on_anomaly_detected(anomaly.model_copy(update={"version": 2}))
    assert done is not None and done.phase == "rolled_back" and "latency anomaly on v2" in (done.reason or "")
    assert await arms(deployer) == [(1, 100, "primary")]


async def test_pause_resume_promote_and_abort(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2, 3)
    r = await start(deployer, "canary", steps=[10, 100], **FAST)
    url = f"/v1/rollouts/{r['id']}"
    paused = (await deployer.client.post(f"{url}/pause", headers=deployer.auth())).json()
    assert paused["phase"] == "paused"
    await asyncio.sleep(0.1)
    await deployer.controller.on_rollout_analysis(verdict(r, 10, "pass"))
    await deployer.controller.progress_tick()
    assert (await rollout(deployer, r["id"]))["step"] == 10, "a paused canary does not advance"
    assert (await deployer.client.post(f"{url}/resume", headers=deployer.auth())).json()[
        "phase"
    ] == "progressing"
    promoted = (await deployer.client.post(f"{url}/promote", headers=deployer.auth())).json()
    assert promoted["phase"] == "promoted" and await arms(deployer) == [(2, 100, "primary")]
    again = await deployer.client.post(f"{url}/abort", headers=deployer.auth())
    assert again.status_code == 409 and "promoted" in again.json()["detail"]

    r3 = await start(deployer, "canary", version=3, **FAST)
    busy = await deployer.client.post(
        "/v1/rollouts", json={"model": "churn", "version": 2, "strategy": "canary"}, headers=deployer.auth()
    )
    assert busy.status_code == 409 and r3["id"] in busy.json()["detail"]
    aborted = (await deployer.client.post(f"/v1/rollouts/{r3['id']}/abort", headers=deployer.auth())).json()
    assert aborted["phase"] == "aborted" and await arms(deployer) == [(2, 100, "primary")]
    bad = await deployer.client.post(f"/v1/rollouts/{r3['id']}/explode", headers=deployer.auth())
    assert bad.status_code == 422


async def test_ab_is_sticky_and_the_significant_winner_is_promoted(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2, 3)
    r = await start(
        deployer, "ab", arms=[{"version": 1, "weight": 70}, {"version": 2, "weight": 30}], kpi="accuracy"
    )
    table = (await deployer.client.get("/v1/routes/churn", headers=deployer.auth())).json()["table"]
    assert [(a["version"], a["weight"], a["sticky"]) for a in table["arms"]] == [(1, 70, True), (2, 30, True)]
    assert (await deployer.published())[-1].data.kpi == "accuracy"
    await deployer.controller.on_rollout_analysis(
        verdict(r, 0, "inconclusive", "no significant difference yet")
    )
    assert (await rollout(deployer, r["id"]))["phase"] == "progressing"
    await deployer.controller.on_rollout_analysis(
        verdict(r, 0, "pass", "candidate wins: accuracy 0.92 against 0.80")
    )
    assert (await rollout(deployer, r["id"]))["phase"] == "promoted"
    assert await arms(deployer) == [(2, 100, "primary")]

    bad = await deployer.client.post(
        "/v1/rollouts",
        json={
            "model": "churn",
            "version": 3,
            "strategy": "ab",
            "arms": [{"version": 2, "weight": 60}, {"version": 3, "weight": 60}],
        },
        headers=deployer.auth(),
    )
    assert bad.status_code == 422 and bad.json()["field"] == "arms"


async def test_ab_without_a_winner_by_its_deadline_keeps_the_baseline(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "ab", duration_s=0.05)
    await asyncio.sleep(0.1)
    await deployer.controller.progress_tick()
    done = await rollout(deployer, r["id"])
    assert done["phase"] == "rolled_back" and "no significant winner" in done["reason"]
    assert await arms(deployer) == [(1, 100, "primary")]


async def test_shadow_mirrors_until_promoted(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "shadow")
    assert await arms(deployer) == [(1, 100, "primary"), (2, 0, "shadow")]
    await deployer.client.post(f"/v1/rollouts/{r['id']}/promote", headers=deployer.auth())
    assert await arms(deployer) == [(2, 100, "primary")]


async def test_blue_green_smoke_tests_switches_and_retires_blue_after_the_window(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await serving_v1(deployer, 2, 3)
    await deployer.client.post(
        "/v1/deployments",
        json={"model": "churn", "version": 1, "quota": {"num_cpus": 0.5}},
        headers=deployer.auth(),
    )
    r = await start(deployer, "blue_green", duration_s=0.05)
    assert ("smoke_test", "churn:2") in serving.calls
    assert r["phase"] == "progressing" and await arms(deployer) == [(2, 100, "primary")]
    assert "fleet-churn-v1" in serving.apps, "blue stays up for the rollback window"
    await asyncio.sleep(0.1)
    await deployer.controller.progress_tick()
    assert (await rollout(deployer, r["id"]))["phase"] == "promoted"
    assert "fleet-churn-v1" not in serving.apps
    listed = (await deployer.client.get("/v1/deployments", headers=deployer.auth())).json()["items"]
    assert [d["version"] for d in listed] == [2], "retired versions leave the list"

    serving.fail_smoke = "model raised ValueError on the example input"
    failed = await start(deployer, "blue_green", version=3)
    assert failed["phase"] == "failed" and "smoke test" in failed["reason"]
    assert await arms(deployer) == [(2, 100, "primary")], "a failed smoke test changes no route"


async def test_a_restarted_deployer_resumes_the_canary_at_the_same_step(tmp_path: Path) -> None:
    serving = FakeServingControl()
    async with running_deployer(tmp_path, serving=serving) as d:
        confirming(d)
        await serving_v1(d, 2)
        r = await start(d, "canary", steps=[10, 40, 100], **FAST)
        await asyncio.sleep(0.1)
        await d.controller.on_rollout_analysis(verdict(r, 10, "pass"))
        assert await arms(d) == [(1, 60, "primary"), (2, 40, "primary")]

    async with running_deployer(tmp_path, serving=serving) as d:
        confirming(d)
        again = await rollout(d, r["id"])
        assert (again["phase"], again["step"]) == ("progressing", 40)
        assert await arms(d) == [(1, 60, "primary"), (2, 40, "primary")]
        await asyncio.sleep(0.1)
        await d.controller.on_rollout_analysis(verdict(r, 40, "pass"))
        assert (await rollout(d, r["id"]))["phase"] == "promoted"


# A person's rollback or explicit route table ends the progressive rollout under way: the candidate
# never gets traffic again from a later tick or verdict, and the rollout says why it ended.
async def advance_everything(d: DeployerHarness, r: dict[str, object]) -> None:
    """Every tick and every passing verdict that used to re-promote the candidate."""
    for step in (5, 25, 50):
        await asyncio.sleep(0.06)
        await d.controller.on_rollout_analysis(verdict(r, step, "pass"))  # type: ignore[arg-type]
        await d.controller.progress_tick()


async def test_a_rollback_ends_the_canary_and_later_ticks_leave_the_candidate_out(
    deployer: DeployerHarness,
) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "canary", **FAST)
    assert await arms(deployer) == [(1, 95, "primary"), (2, 5, "primary")]

    back = await deployer.client.post(
        "/v1/models/churn/rollback", json={"reason": "bad numbers"}, headers=deployer.auth()
    )
    assert back.status_code == 201, back.text
    assert await arms(deployer) == [(1, 100, "primary")]

    ended = await rollout(deployer, r["id"])
    assert ended["phase"] == "rolled_back"
    assert (
        "rollback" in ended["reason"]
        and "admin-user" in ended["reason"]
        and back.json()["id"] in ended["reason"]
    )
    await advance_everything(deployer, r)
    assert await arms(deployer) == [(1, 100, "primary")]
    assert (await rollout(deployer, r["id"]))["phase"] == "rolled_back"
    last = [e.data for e in await deployer.published() if e.data.rollout_id == r["id"]][-1]
    assert last.phase == "rolled_back", "the gateway and monitor hear that the canary ended"


@pytest.mark.parametrize("strategy", ["canary", "ab", "shadow"])
async def test_an_explicit_route_table_aborts_the_progressive_rollout(
    deployer: DeployerHarness, strategy: str
) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, strategy, **FAST)
    put = await deployer.client.put(
        "/v1/routes/churn", json={"arms": [{"version": 1, "weight": 100}]}, headers=deployer.auth()
    )
    assert put.status_code == 200, put.text

    ended = await rollout(deployer, r["id"])
    assert ended["phase"] == "aborted"
    assert "explicit route table" in ended["reason"]
    await advance_everything(deployer, r)
    assert await arms(deployer) == [(1, 100, "primary")]
    promote = await deployer.client.post(f"/v1/rollouts/{r['id']}/promote", headers=deployer.auth())
    assert promote.status_code == 409, "an ended rollout cannot be promoted any more"
    assert await arms(deployer) == [(1, 100, "primary")]


async def test_a_paused_canary_is_ended_by_a_rollback_too(deployer: DeployerHarness) -> None:
    await serving_v1(deployer, 2)
    r = await start(deployer, "canary", **FAST)
    await deployer.client.post(f"/v1/rollouts/{r['id']}/pause", headers=deployer.auth())
    back = await deployer.client.post("/v1/models/churn/rollback", headers=deployer.auth())
    assert back.status_code == 201, back.text
    assert (await rollout(deployer, r["id"]))["phase"] == "rolled_back"
    resumed = await deployer.client.post(f"/v1/rollouts/{r['id']}/resume", headers=deployer.auth())
    assert resumed.status_code == 409
    await advance_everything(deployer, r)
    assert await arms(deployer) == [(1, 100, "primary")]
