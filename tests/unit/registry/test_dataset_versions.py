"""Datasets version by content: a version is the sha256 of its file, the same bytes are the same
version, and new bytes make the next version with the previous one as parent."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness

FIRST = b"x0,x1,label\n1.0,2.0,0\n3.0,4.0,1\n"
SECOND = b"x0,x1,label\n1.0,2.0,0\n3.0,4.0,1\n5.0,6.0,1\n"


@pytest.fixture
async def registry(registry: RegistryHarness) -> RegistryHarness:
    """The registry with one dataset, `events`, of team `growth`."""
    r = await registry.client.post(
        "/v1/datasets",
        json={"name": "events", "team": "growth", "description": "app events", "tags": ["daily"]},
        headers=registry.auth(),
    )
    assert r.status_code == 201, r.text
    return registry


async def upload(h: RegistryHarness, data: bytes, headers: dict[str, str] | None = None, **meta: Any) -> Any:
    metadata = {"row_count": data.count(b"\n") - 1, "format": "csv", **meta}
    return await h.client.post(
        "/v1/datasets/events/versions",
        data={"metadata": json.dumps(metadata)},
        files={"file": ("events.csv", data)},
        headers=headers or h.auth(),
    )


async def test_a_dataset_is_created_listed_and_shown(registry: RegistryHarness) -> None:
    admin = registry.auth()
    await registry.client.post("/v1/datasets", json={"name": "clicks", "team": "ads"}, headers=admin)
    listing = (await registry.client.get("/v1/datasets", headers=admin)).json()
    assert listing["total"] == 2 and [d["name"] for d in listing["items"]] == ["clicks", "events"]
    by_team = (await registry.client.get("/v1/datasets?team=ads", headers=admin)).json()
    assert [d["name"] for d in by_team["items"]] == ["clicks"]
    shown = (await registry.client.get("/v1/datasets/events", headers=admin)).json()
    assert (shown["team"], shown["description"], shown["tags"], shown["latest_version"]) == (
        "growth",
        "app events",
        ["daily"],
        None,
    )
    again = await registry.client.post(
        "/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin
    )
    assert (again.status_code, again.json()["field"]) == (409, "name")


async def test_a_viewer_sees_only_their_teams_datasets(registry: RegistryHarness) -> None:
    await registry.client.post(
        "/v1/datasets", json={"name": "clicks", "team": "ads"}, headers=registry.auth()
    )
    viewer = registry.auth(Role.VIEWER, ["ads"])
    listing = (await registry.client.get("/v1/datasets", headers=viewer)).json()
    assert [d["name"] for d in listing["items"]] == ["clicks"]
    assert (await registry.client.get("/v1/datasets/events", headers=viewer)).status_code == 403


async def test_a_dataset_version_is_the_sha256_of_its_file(registry: RegistryHarness) -> None:
    r = await upload(registry, FIRST, registry.auth(Role.SCIENTIST, ["growth"], subject="ana"))
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["dataset"], v1["version"], v1["parent_version"]) == ("events", 1, None)
    assert v1["content_hash"] == hashlib.sha256(FIRST).hexdigest()
    assert (v1["row_count"], v1["format"], v1["size_bytes"], v1["created_by"]) == (
        2,
        "csv",
        len(FIRST),
        "ana",
    )


async def test_uploading_identical_content_returns_the_existing_version(registry: RegistryHarness) -> None:
    first = await upload(registry, FIRST)
    same = await upload(registry, FIRST, description="uploaded again by a nightly job")
    assert (first.status_code, same.status_code) == (201, 200)
    assert same.json() == first.json()
    listing = (await registry.client.get("/v1/datasets/events/versions", headers=registry.auth())).json()
    assert listing["total"] == 1


async def test_new_content_becomes_the_next_version_with_the_previous_as_parent(
    registry: RegistryHarness,
) -> None:
    await upload(registry, FIRST)
    second = await upload(registry, SECOND)
    assert second.status_code == 201
    assert (second.json()["version"], second.json()["parent_version"]) == (2, 1)
    assert second.json()["content_hash"] == hashlib.sha256(SECOND).hexdigest()
    assert (await registry.client.get("/v1/datasets/events", headers=registry.auth())).json()[
        "latest_version"
    ] == 2


async def test_dataset_versions_are_listed_newest_first_shown_and_downloaded(
    registry: RegistryHarness,
) -> None:
    await upload(registry, FIRST)
    await upload(registry, SECOND, schema={"x0": "float", "x1": "float", "label": "int"})
    admin = registry.auth()
    listing = (await registry.client.get("/v1/datasets/events/versions", headers=admin)).json()
    assert [v["version"] for v in listing["items"]] == [2, 1]
    paged = (await registry.client.get("/v1/datasets/events/versions?limit=1&offset=1", headers=admin)).json()
    assert (paged["total"], [v["version"] for v in paged["items"]]) == (2, [1])
    v2 = (await registry.client.get("/v1/datasets/events/versions/2", headers=admin)).json()
    assert v2["schema"] == {"x0": "float", "x1": "float", "label": "int"} and v2["row_count"] == 3
    for version, data in ((1, FIRST), (2, SECOND)):
        content = await registry.client.get(f"/v1/datasets/events/versions/{version}/content", headers=admin)
        assert content.content == data
        assert content.headers["x-fleet-content-hash"] == hashlib.sha256(data).hexdigest()
    missing = await registry.client.get("/v1/datasets/events/versions/3", headers=admin)
    assert (missing.status_code, missing.json()["field"]) == (404, "dataset_version")


async def test_a_viewer_cannot_add_a_dataset_version(registry: RegistryHarness) -> None:
    r = await upload(registry, FIRST, registry.auth(Role.VIEWER, ["growth"]))
    assert r.status_code == 403
    assert (await registry.client.get("/v1/datasets/events/versions", headers=registry.auth())).json()[
        "total"
    ] == 0
