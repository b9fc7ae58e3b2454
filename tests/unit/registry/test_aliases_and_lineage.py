"""Aliases name the version to use (``champion``, ``staging``) and move between versions; lineage
says where a version came from (dataset version, parent) and what came from it."""

from __future__ import annotations

import hashlib

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness, skops_model, upload_version


@pytest.fixture
async def registry(registry: RegistryHarness) -> RegistryHarness:
    """The registry with model `churn` (team `growth`) and its versions 1 and 2."""
    admin = registry.auth()
    await registry.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
    for seed in (1, 2):
        assert (await upload_version(registry, "churn", admin, artifact=skops_model(seed))).status_code == 201
    return registry


async def test_an_alias_is_set_resolved_moved_and_deleted(registry: RegistryHarness) -> None:
    ana = registry.auth(Role.SCIENTIST, ["growth"])
    client = registry.client
    set_ = await client.put("/v1/models/churn/aliases/champion", json={"version": 1}, headers=ana)
    assert set_.status_code == 200 and (set_.json()["version"], set_.json()["aliases"]) == (1, ["champion"])
    resolved = await client.get(
        "/v1/models/churn/aliases/champion", headers=registry.auth(Role.VIEWER, ["growth"])
    )
    assert resolved.json()["version"] == 1
    v1 = (await client.get("/v1/models/churn/versions/1", headers=ana)).json()
    assert resolved.json() == v1 | {"aliases": ["champion"]}

    moved = await client.put("/v1/models/churn/aliases/champion", json={"version": 2}, headers=ana)
    assert moved.json()["aliases"] == ["champion"]
    assert (await client.get("/v1/models/churn/aliases/champion", headers=ana)).json()["version"] == 2
    assert (await client.get("/v1/models/churn/versions/1", headers=ana)).json()["aliases"] == []
    assert (await client.get("/v1/models/churn", headers=ana)).json()["aliases"] == {"champion": 2}

    assert (await client.delete("/v1/models/churn/aliases/champion", headers=ana)).status_code == 204
    gone = await client.get("/v1/models/churn/aliases/champion", headers=ana)
    assert (gone.status_code, gone.json()["field"]) == (404, "alias")
    assert (await client.get("/v1/models/churn", headers=ana)).json()["aliases"] == {}
    # The version itself is untouched by alias changes.
    assert (await client.get("/v1/models/churn/versions/2", headers=ana)).status_code == 200


async def test_several_aliases_may_point_at_one_version(registry: RegistryHarness) -> None:
    admin = registry.auth()
    for alias in ("staging", "champion"):
        await registry.client.put(f"/v1/models/churn/aliases/{alias}", json={"version": 2}, headers=admin)
    v2 = (await registry.client.get("/v1/models/churn/versions/2", headers=admin)).json()
    assert v2["aliases"] == ["champion", "staging"]
    listed = (await registry.client.get("/v1/models/churn/versions", headers=admin)).json()["items"]
    assert [(v["version"], v["aliases"]) for v in listed] == [(2, ["champion", "staging"]), (1, [])]


async def test_aliases_can_be_given_at_registration(registry: RegistryHarness) -> None:
    admin = registry.auth()
    v3 = await upload_version(registry, "churn", admin, artifact=skops_model(3), aliases=["challenger"])
    assert v3.json()["aliases"] == ["challenger"]
    assert (await registry.client.get("/v1/models/churn/aliases/challenger", headers=admin)).json()[
        "version"
    ] == 3


async def test_an_alias_must_point_at_an_existing_version_and_have_a_valid_name(
    registry: RegistryHarness,
) -> None:
    admin = registry.auth()
    missing = await registry.client.put(
        "/v1/models/churn/aliases/champion", json={"version": 9}, headers=admin
    )
    assert (missing.status_code, missing.json()["field"]) == (404, "version")
    bad_name = await registry.client.put(
        "/v1/models/churn/aliases/Not%20OK", json={"version": 1}, headers=admin
    )
    assert (bad_name.status_code, bad_name.json()["field"]) == (422, "alias")
    assert (await registry.client.get("/v1/models/churn", headers=admin)).json()["aliases"] == {}


async def test_a_viewer_cannot_move_an_alias(registry: RegistryHarness) -> None:
    viewer = registry.auth(Role.VIEWER, ["growth"])
    r = await registry.client.put("/v1/models/churn/aliases/champion", json={"version": 1}, headers=viewer)
    assert r.status_code == 403


async def test_lineage_shows_the_dataset_version_the_parent_and_the_children(
    registry: RegistryHarness,
) -> None:
    admin = registry.auth()
    await registry.client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
    data = b"x0,x1,label\n1,2,0\n3,4,1\n"
    await registry.client.post(
        "/v1/datasets/events/versions",
        data={"metadata": '{"row_count": 2, "format": "csv"}'},
        files={"file": ("events.csv", data)},
        headers=admin,
    )
    trained = await upload_version(
        registry,
        "churn",
        admin,
        artifact=skops_model(3),
        dataset_version={"dataset": "events", "version": 1},
        origin="retrain",
        parent_version=2,
        trigger_event_id="evt-drift-1",
    )
    assert trained.status_code == 201, trained.text
    assert trained.json()["dataset_version"]["content_hash"] == hashlib.sha256(data).hexdigest()
    await upload_version(
        registry, "churn", admin, artifact=skops_model(4), origin="retrain", parent_version=2
    )

    v3 = (await registry.client.get("/v1/models/churn/versions/3/lineage", headers=admin)).json()
    assert (v3["model"], v3["version"], v3["origin"], v3["trigger_event_id"]) == (
        "churn",
        3,
        "retrain",
        "evt-drift-1",
    )
    assert v3["dataset_version"]["dataset"] == "events" and v3["dataset_version"]["version"] == 1
    assert v3["dataset_version"]["content_hash"] == hashlib.sha256(data).hexdigest()
    assert v3["parent"]["version"] == 2 and v3["children"] == []

    v2 = (await registry.client.get("/v1/models/churn/versions/2/lineage", headers=admin)).json()
    assert v2["parent"] is None and v2["dataset_version"] is None and v2["origin"] == "manual"
    assert [c["version"] for c in v2["children"]] == [3, 4]


async def test_a_version_trained_on_an_unknown_dataset_version_is_refused(registry: RegistryHarness) -> None:
    r = await upload_version(
        registry,
        "churn",
        registry.auth(),
        artifact=skops_model(3),
        dataset_version={"dataset": "nope", "version": 1},
    )
    assert r.status_code == 404 and r.json()["field"].startswith("dataset")
    assert "dataset 'nope' does not exist" in r.json()["detail"]
    assert (await registry.client.get("/v1/models/churn", headers=registry.auth())).json()[
        "latest_version"
    ] == 2
