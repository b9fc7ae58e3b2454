"""Out-of-range input is a 422 naming the field, never a 500 (the fuzz pass found two): versions are
1..2**31-1 and model names follow the registry's pattern, in bodies, paths and queries alike."""

from __future__ import annotations

import pytest

from support.deployer import DeployerHarness

HUGE = -137161971302120718336
SURROGATE = '"\\ud800"'  # a JSON string holding an unpaired surrogate


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("POST", "/v1/deployments", f'{{"model": {SURROGATE}}}', "model"),
        ("POST", "/v1/deployments", '{"model": "Churn Model"}', "model"),
        ("POST", "/v1/deployments", f'{{"model": "churn", "version": {HUGE}}}', "version"),
        ("POST", "/v1/deployments", '{"model": "churn", "version": 0}', "version"),
        ("POST", "/v1/rollouts", f'{{"model": "churn", "version": {HUGE}}}', "version"),
        ("POST", "/v1/rollouts", f'{{"model": {SURROGATE}, "version": 1}}', "model"),
        ("POST", "/v1/rollouts", '{"model": "churn", "version": 2147483648}', "version"),
        (
            "POST",
            "/v1/rollouts",
            '{"model": "churn", "version": 2, "strategy": "ab", '
            f'"arms": [{{"version": {HUGE}, "weight": 50}}]}}',
            "arms.0.version",
        ),
        (
            "POST",
            "/v1/rollouts",
            '{"model": "churn", "version": 2, "step_interval_s": 1e300}',
            "step_interval_s",
        ),
        ("POST", "/v1/rollouts", '{"model": "churn", "version": 2, "duration_s": -1}', "duration_s"),
        ("POST", "/v1/rollouts", '{"model": "churn", "version": 2, "reason": ' + SURROGATE + "}", "reason"),
        ("PUT", "/v1/routes/churn", f'{{"arms": [{{"version": {HUGE}, "weight": 100}}]}}', "arms.0.version"),
        (
            "PUT",
            "/v1/routes/churn",
            f'{{"arms": [{{"version": 1, "weight": 100}}], "expected_revision": {HUGE}}}',
            "expected_revision",
        ),
        ("POST", "/v1/models/churn/rollback", f'{{"reason": {SURROGATE}}}', "reason"),
    ],
)
async def test_out_of_range_bodies_are_422_naming_the_field(
    deployer: DeployerHarness, method: str, url: str, body: str, field: str
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    r = await deployer.client.request(
        method, url, content=body.encode(), headers=deployer.auth() | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.json()


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("DELETE", "/v1/deployments/churn/99999999999999999999", "version"),
        ("DELETE", "/v1/deployments/churn/0", "version"),
        ("DELETE", "/v1/deployments/Churn%20Model/1", "model"),
        ("GET", "/v1/routes/%ED%A0%80", "model"),
        ("PUT", "/v1/routes/%ED%A0%80", "model"),
        ("POST", "/v1/models/%ED%A0%80/rollback", "model"),
        ("GET", "/v1/rollouts?model=%ED%A0%80", "model"),
        ("GET", "/v1/rollouts/" + "x" * 200, "rollout_id"),
        ("POST", "/v1/rollouts/" + "x" * 200 + "/abort", "rollout_id"),
    ],
)
async def test_out_of_range_paths_and_queries_are_422_naming_the_field(
    deployer: DeployerHarness, method: str, url: str, field: str
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    body = {"json": {"arms": [{"version": 1, "weight": 100}]}} if method == "PUT" else {}
    r = await deployer.client.request(method, url, headers=deployer.auth(), **body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()


async def test_in_range_values_still_work(deployer: DeployerHarness) -> None:
    await deployer.register("churn.v2_a-b", 2147483647, deploy_policy="direct")
    r = await deployer.client.post(
        "/v1/deployments", json={"model": "churn.v2_a-b", "version": 2147483647}, headers=deployer.auth()
    )
    assert r.status_code == 201, r.text
