"""Every retrainer route checks the caller's role and team: the team is the model's (the registry's
answer) or the job's, a model or job whose team is unknown is reachable only by principals who see
every team, listings show only the caller's teams' jobs, and no policy can raise the box-wide job
limit. Bad input is a 422, never a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fleet_core.auth import Role
from fleet_retrainer.entities import Job
from support.retrainer import RetrainerHarness


@pytest.fixture
async def fleet(retrainer: RetrainerHarness) -> AsyncIterator[Any]:
    """Team alpha's `credit` and team beta's `ledger`, each with a finished job, and one job from
    before jobs recorded their team."""
    retrainer.registry.add_champion("credit", "alpha")
    retrainer.registry.add_champion("ledger", "beta")
    store = retrainer.controller.store
    async with store.transaction() as s:
        for model, team in (("credit", "alpha"), ("ledger", "beta"), ("old", None)):
            await store.add_job(
                s,
                model=model,
                team=team,
                trigger="manual",
                trigger_event_id=None,
                requested_by="someone",
                champion_version=1,
                state="rejected",
                reason="seeded",
            )
    yield retrainer


def assert_forbidden(r: httpx.Response, field: str | None = None) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert r.json()["field"] == field, r.json()


def assert_invalid(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.json()


async def job_id(h: RetrainerHarness, model: str) -> str:
    jobs = (await h.client.get("/v1/jobs", params={"model": model}, headers=h.auth())).json()["items"]
    return str(jobs[0]["id"])


async def test_a_job_for_another_teams_model_is_refused_and_none_is_created(fleet: Any) -> None:
    before = await fleet.all_jobs()
    alpha_scientist = fleet.auth(Role.SCIENTIST, ["alpha"])
    assert_forbidden(
        await fleet.client.post("/v1/jobs", json={"model": "ledger"}, headers=alpha_scientist), "team"
    )
    beta_viewer = fleet.auth(Role.VIEWER, ["beta"])
    assert_forbidden(await fleet.client.post("/v1/jobs", json={"model": "ledger"}, headers=beta_viewer))
    # A model the registry does not know has no team: only an all-teams principal may ask.
    assert_forbidden(
        await fleet.client.post("/v1/jobs", json={"model": "ghost"}, headers=alpha_scientist), "team"
    )
    assert await fleet.all_jobs() == before


async def test_a_team_sees_only_its_own_jobs(fleet: Any) -> None:
    alpha = fleet.auth(Role.VIEWER, ["alpha"])
    listed = (await fleet.client.get("/v1/jobs", headers=alpha)).json()["items"]
    assert {j["model"] for j in listed} == {"credit"}
    assert {j["team"] for j in listed} == {"alpha"}
    hidden = (await fleet.client.get("/v1/jobs", params={"model": "ledger"}, headers=alpha)).json()
    assert (hidden["items"], hidden["total"]) == ([], 0)
    assert (await fleet.client.get("/v1/jobs", params={"team": "beta"}, headers=alpha)).json()["total"] == 0
    everyone = (await fleet.client.get("/v1/jobs", headers=fleet.auth())).json()
    assert {j["model"] for j in everyone["items"]} == {"credit", "ledger", "old"} and everyone["total"] == 3


async def test_one_job_and_its_logs_need_the_jobs_team(fleet: Any) -> None:
    alpha = fleet.auth(Role.VIEWER, ["alpha"])
    for job in (await job_id(fleet, "ledger"), await job_id(fleet, "old")):
        assert_forbidden(await fleet.client.get(f"/v1/jobs/{job}", headers=alpha), "team")
        assert_forbidden(await fleet.client.get(f"/v1/jobs/{job}/logs", headers=alpha), "team")
        assert (await fleet.client.get(f"/v1/jobs/{job}/logs", headers=fleet.auth())).status_code == 200
    mine = await job_id(fleet, "credit")
    assert (
        Job.model_validate((await fleet.client.get(f"/v1/jobs/{mine}", headers=alpha)).json()).team == "alpha"
    )
    assert (await fleet.client.get(f"/v1/jobs/{mine}/logs", headers=alpha)).json()["lines"]


async def test_policies_need_the_role_on_the_models_team(fleet: Any) -> None:
    body = {"cooldown_s": 60, "min_new_labelled_rows": 5}
    alpha_viewer, alpha_deployer = fleet.auth(Role.VIEWER, ["alpha"]), fleet.auth(Role.DEPLOYER, ["alpha"])
    assert_forbidden(await fleet.client.get("/v1/policies/ledger", headers=alpha_viewer), "team")
    assert_forbidden(await fleet.client.put("/v1/policies/ledger", json=body, headers=alpha_deployer), "team")
    assert_forbidden(await fleet.client.put("/v1/policies/ghost", json=body, headers=alpha_deployer), "team")
    assert_forbidden(
        await fleet.client.put("/v1/policies/ledger", json=body, headers=fleet.auth(Role.SCIENTIST, ["beta"]))
    )
    assert (await fleet.client.get("/v1/policies/ledger", headers=fleet.auth())).json()["cooldown_s"] == 3600
    beta_deployer = fleet.auth(Role.DEPLOYER, ["beta"])
    r = await fleet.client.put("/v1/policies/ledger", json=body, headers=beta_deployer)
    assert r.status_code == 200 and r.json()["cooldown_s"] == 60
    assert (await fleet.client.get("/v1/policies/credit", headers=alpha_viewer)).json()["cooldown_s"] == 3600


async def test_no_policy_raises_the_box_wide_job_limit(fleet: Any) -> None:
    beta_deployer = fleet.auth(Role.DEPLOYER, ["beta"])
    r = await fleet.client.put("/v1/policies/ledger", json={"max_concurrent_jobs": 50}, headers=beta_deployer)
    assert_invalid(r, "max_concurrent_jobs")
    # A policy stored by an older release that still carries the limit is ignored.
    controller = fleet.controller
    async with controller.store.transaction() as s:
        await controller.store.put_policy(s, "ledger", {"max_concurrent_jobs": 50}, by="beta-deployer")
        await controller.store.add_job(
            s,
            model="credit",
            team="alpha",
            trigger="manual",
            trigger_event_id=None,
            requested_by="alpha",
            champion_version=1,
            state="running",
            reason="running elsewhere",
        )
    decision, job = await controller.on_trigger("ledger", "manual", requested_by="beta-scientist")
    assert decision.action == "queue", decision
    assert job is not None and (await controller.job(job.id)).state == "queued"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/jobs", {"model": "credit", "version": 10**30}, "version"),
        ("POST", "/v1/jobs", {"model": "credit", "version": -137161971302120718336}, "version"),
        ("POST", "/v1/jobs", {"model": "Bad Name\u00e9" * 20}, "model"),
        ("POST", "/v1/jobs", b'{"model": "credit\\ud800"}', "model"),  # an unpaired surrogate
        ("POST", "/v1/jobs", {"model": "credit", "version": "1e400"}, "version"),
        ("GET", "/v1/jobs?limit=236967761860626644992", None, "limit"),
        ("GET", "/v1/jobs?state=exploded", None, "state"),
        ("GET", "/v1/jobs?model=" + "x" * 5000, None, "model"),
        ("GET", "/v1/jobs/" + "j" * 5000, None, "job_id"),
        ("GET", "/v1/jobs/%00/logs", None, "job_id"),
        ("GET", "/v1/policies/Not%20A%20Model", None, "model"),
        ("PUT", "/v1/policies/credit", {"cooldown_s": 1e308}, "cooldown_s"),
        ("PUT", "/v1/policies/credit", {"schedule_every_s": 10**40}, "schedule_every_s"),
        ("PUT", "/v1/policies/credit", {"min_new_labelled_rows": 10**30}, "min_new_labelled_rows"),
        ("PUT", "/v1/policies/credit", {"min_improvement": -1}, "min_improvement"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    fleet: Any, method: str, path: str, body: Any, field: str
) -> None:
    before = await fleet.all_jobs()
    if isinstance(body, bytes):  # JSON that httpx would not encode
        headers = {**fleet.auth(), "content-type": "application/json"}
        r = await fleet.client.request(method, path, content=body, headers=headers)
    else:
        r = await fleet.client.request(method, path, json=body, headers=fleet.auth())
    assert_invalid(r, field)
    assert await fleet.all_jobs() == before
    assert (await fleet.client.get("/v1/policies/credit", headers=fleet.auth())).json()["cooldown_s"] == 3600
