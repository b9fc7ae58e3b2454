"""One team's registry data stays its own: a version may not borrow another team's dataset or
artifact, a registration never reveals the hash of an object it may not read, and going live
needs the deployer role on the model's team (issue 12, holes 2 and 4)."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness, skops_model, upload_version, version_metadata


@pytest.fixture
async def registry(registry: RegistryHarness) -> RegistryHarness:
    """Two teams: `growth` owns model `churn` and dataset `churn-data`; `risk` owns model `fraud`
    and dataset `fraud-data` (version 1 of each dataset exists)."""
    admin = registry.auth()
    for model, dataset, team in (("churn", "churn-data", "growth"), ("fraud", "fraud-data", "risk")):
        r = await registry.client.post("/v1/models", json={"name": model, "team": team}, headers=admin)
        assert r.status_code == 201, r.text
        r = await registry.client.post("/v1/datasets", json={"name": dataset, "team": team}, headers=admin)
        assert r.status_code == 201, r.text
        r = await registry.client.post(
            f"/v1/datasets/{dataset}/versions",
            data={"metadata": json.dumps({"row_count": 1, "format": "csv"})},
            files={"file": ("d.csv", io.BytesIO(f"x0,x1\n{team},2\n".encode()))},
            headers=admin,
        )
        assert r.status_code == 201, r.text
    return registry


def scientist(registry: RegistryHarness, team: str) -> dict[str, str]:
    return registry.auth(Role.SCIENTIST, [team], subject=f"{team}-scientist")


async def versions(registry: RegistryHarness, model: str) -> int:
    r = await registry.client.get(f"/v1/models/{model}/versions", headers=registry.auth())
    return int(r.json()["total"])


def problem(r: Any) -> tuple[int, str | None]:
    return r.status_code, r.json().get("field")


async def test_a_version_may_not_reference_another_teams_dataset_version(registry: RegistryHarness) -> None:
    # A member of both teams still may not wire growth's model to risk's data: the retrainer
    # would later build datasets for `churn` on top of risk's rows.
    both = registry.auth(Role.SCIENTIST, ["growth", "risk"], subject="both")
    for headers in (scientist(registry, "growth"), both, registry.auth()):
        r = await upload_version(
            registry, "churn", headers, dataset_version={"dataset": "fraud-data", "version": 1}
        )
        assert problem(r) == (403, "dataset_version"), r.text
        assert "risk" in r.json()["detail"]
    assert await versions(registry, "churn") == 0
    own = await upload_version(
        registry,
        "churn",
        scientist(registry, "growth"),
        dataset_version={"dataset": "churn-data", "version": 1},
    )
    assert own.status_code == 201, own.text


async def test_from_uri_on_another_teams_artifact_is_forbidden(registry: RegistryHarness) -> None:
    risk = registry.auth(Role.SCIENTIST, ["risk"], subject="risk-scientist")
    secret = await upload_version(registry, "fraud", risk, artifact=skops_model(7))
    assert secret.status_code == 201
    fraud_v1 = secret.json()
    growth = scientist(registry, "growth")
    for sha256 in (fraud_v1["sha256"], "0" * 64):
        body = {**version_metadata(), "artifact_uri": fraud_v1["artifact_uri"], "sha256": sha256}
        r = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=growth)
        assert problem(r) == (403, "artifact_uri"), r.text
        assert fraud_v1["sha256"] not in r.text
    # risk's dataset file is just as much risk's.
    dataset = (
        await registry.client.get("/v1/datasets/fraud-data/versions/1", headers=registry.auth())
    ).json()
    body = {**version_metadata(), "artifact_uri": dataset["uri"], "sha256": dataset["content_hash"]}
    r = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=growth)
    assert problem(r) == (403, "artifact_uri"), r.text
    assert await versions(registry, "churn") == 0
    # The owning team may re-register its own artifact under its own model (as a new number: the
    # same bytes without one answer with the version that holds them).
    body = {
        **version_metadata(version=2),
        "artifact_uri": fraud_v1["artifact_uri"],
        "sha256": fraud_v1["sha256"],
    }
    r = await registry.client.post("/v1/models/fraud/versions/from-uri", json=body, headers=risk)
    assert r.status_code == 201, r.text


async def test_a_dataset_from_uri_on_another_teams_file_is_forbidden(registry: RegistryHarness) -> None:
    dataset = (
        await registry.client.get("/v1/datasets/fraud-data/versions/1", headers=registry.auth())
    ).json()
    r = await registry.client.post(
        "/v1/datasets/churn-data/versions/from-uri",
        json={
            "uri": dataset["uri"],
            "content_hash": dataset["content_hash"],
            "row_count": 1,
            "format": "csv",
        },
        headers=scientist(registry, "growth"),
    )
    assert problem(r) == (403, "uri"), r.text


async def test_objects_outside_every_team_prefix_belong_to_admins(registry: RegistryHarness) -> None:
    stray = registry.settings.home / "artifacts" / "jobs" / "run-1" / "model.skops"
    stray.parent.mkdir(parents=True)
    artifact = skops_model(3)
    stray.write_bytes(artifact)
    body = {
        **version_metadata(),
        "artifact_uri": stray.as_uri(),
        "sha256": hashlib.sha256(artifact).hexdigest(),
    }
    r = await registry.client.post(
        "/v1/models/churn/versions/from-uri", json=body, headers=scientist(registry, "growth")
    )
    assert problem(r) == (403, "artifact_uri"), r.text
    # A team's own staging prefix, teams/<team>/, is the place for pipelines to drop artifacts.
    staged = registry.settings.home / "artifacts" / "teams" / "growth" / "run-1" / "model.skops"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(artifact)
    r = await registry.client.post(
        "/v1/models/churn/versions/from-uri",
        json={**body, "artifact_uri": staged.as_uri()},
        headers=scientist(registry, "growth"),
    )
    assert r.status_code == 201, r.text
    # ...and only for that team.
    r = await registry.client.post(
        "/v1/models/fraud/versions/from-uri",
        json={**body, "artifact_uri": staged.as_uri()},
        headers=registry.auth(Role.SCIENTIST, ["risk"]),
    )
    assert problem(r) == (403, "artifact_uri"), r.text


async def test_a_wrong_sha256_does_not_echo_the_objects_hash(registry: RegistryHarness) -> None:
    growth = scientist(registry, "growth")
    v1 = (await upload_version(registry, "churn", growth, artifact=skops_model(2))).json()
    body = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": "0" * 64}
    r = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=growth)
    assert problem(r) == (422, "sha256")
    # The URI (content-addressed, so holding the hash) is the caller's own; nothing else may be.
    assert v1["sha256"] not in r.json()["detail"].replace(v1["artifact_uri"], "")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"deploy_policy": "direct"}, "deploy_policy"),
        ({"deploy_policy": "canary"}, "deploy_policy"),
        ({"quota": {"num_cpus": 0.5, "min_replicas": 1, "max_replicas": 2}}, "quota"),
    ],
)
async def test_going_live_at_registration_needs_the_deployer_role(
    registry: RegistryHarness, extra: dict[str, Any], field: str
) -> None:
    r = await upload_version(registry, "churn", scientist(registry, "growth"), **extra)
    assert problem(r) == (403, field), r.text
    # A deployer of another team is no better.
    r = await upload_version(registry, "churn", registry.auth(Role.DEPLOYER, ["risk"]), **extra)
    assert r.status_code == 403, r.text
    assert await versions(registry, "churn") == 0
    ok = await upload_version(registry, "churn", registry.auth(Role.DEPLOYER, ["growth"]), **extra)
    assert ok.status_code == 201, ok.text
    # Registering without going live stays a scientist's job.
    plain = await upload_version(registry, "churn", scientist(registry, "growth"), deploy_policy="none")
    assert plain.status_code == 201, plain.text
