"""The model catalogue: creating models, finding them again (filters, paging, team visibility),
updating what may change, and archiving instead of deleting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleet_core.auth import Role
from support.registry import RegistryHarness, skops_model, upload_version


def names(response: Any) -> list[str]:
    return [m["name"] for m in response.json()["items"]]


async def create(h: RegistryHarness, name: str, team: str = "fraud", **fields: Any) -> dict[str, Any]:
    r = await h.client.post("/v1/models", json={"name": name, "team": team, **fields}, headers=h.auth())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_scientist_creates_a_model_for_their_team(registry: RegistryHarness) -> None:
    ana = registry.auth(Role.SCIENTIST, ["fraud"], subject="ana")
    body = {"name": "card-fraud", "team": "fraud", "description": "scores card payments", "tags": ["tabular"]}
    r = await registry.client.post("/v1/models", json=body, headers=ana)
    assert r.status_code == 201, r.text
    model = r.json()
    assert {k: model[k] for k in body} == body
    assert model["archived"] is False
    assert model["created_by"] == "ana"
    assert model["latest_version"] is None and model["aliases"] == {}


async def test_a_model_name_can_be_taken_only_once(registry: RegistryHarness) -> None:
    await create(registry, "churn")
    again = await registry.client.post(
        "/v1/models", json={"name": "churn", "team": "other"}, headers=registry.auth()
    )
    assert (again.status_code, again.json()["field"]) == (409, "name")
    assert "already exists" in again.json()["detail"]


async def test_a_scientist_cannot_create_a_model_for_another_team(registry: RegistryHarness) -> None:
    ana = registry.auth(Role.SCIENTIST, ["fraud"])
    r = await registry.client.post("/v1/models", json={"name": "m", "team": "growth"}, headers=ana)
    assert (r.status_code, r.json()["field"]) == (403, "team")
    viewer = registry.auth(Role.VIEWER, ["fraud"])
    r = await registry.client.post("/v1/models", json={"name": "m", "team": "fraud"}, headers=viewer)
    assert r.status_code == 403


async def test_listing_filters_by_team_tag_and_name(registry: RegistryHarness) -> None:
    await create(registry, "card-fraud", "fraud", tags=["tabular", "realtime"])
    await create(registry, "wire-fraud", "fraud", tags=["tabular"])
    await create(registry, "churn", "growth", tags=["realtime"])
    admin = registry.auth()
    get = registry.client.get
    assert names(await get("/v1/models", headers=admin)) == ["card-fraud", "churn", "wire-fraud"]
    assert names(await get("/v1/models?team=fraud", headers=admin)) == ["card-fraud", "wire-fraud"]
    assert names(await get("/v1/models?tag=realtime", headers=admin)) == ["card-fraud", "churn"]
    assert names(await get("/v1/models?name=fraud", headers=admin)) == ["card-fraud", "wire-fraud"]
    assert names(await get("/v1/models?team=fraud&tag=realtime", headers=admin)) == ["card-fraud"]
    assert names(await get("/v1/models?name=nothing-like-it", headers=admin)) == []


async def test_listing_pages_with_total_limit_and_offset(registry: RegistryHarness) -> None:
    for i in range(7):
        await create(registry, f"model-{i}", tags=["even"] if i % 2 == 0 else [])
    admin = registry.auth()
    page = (await registry.client.get("/v1/models?limit=3&offset=3", headers=admin)).json()
    assert (page["total"], page["limit"], page["offset"]) == (7, 3, 3)
    assert [m["name"] for m in page["items"]] == ["model-3", "model-4", "model-5"]
    last = (await registry.client.get("/v1/models?limit=3&offset=6", headers=admin)).json()
    assert [m["name"] for m in last["items"]] == ["model-6"]
    # Paging applies after the tag filter, and total counts what the filter matched.
    tagged = (await registry.client.get("/v1/models?tag=even&limit=2&offset=1", headers=admin)).json()
    assert (tagged["total"], [m["name"] for m in tagged["items"]]) == (4, ["model-2", "model-4"])
    too_big = await registry.client.get("/v1/models?limit=501", headers=admin)
    assert (too_big.status_code, too_big.json()["field"]) == (422, "limit")


async def test_a_viewer_of_one_team_does_not_see_another_teams_models(registry: RegistryHarness) -> None:
    await create(registry, "card-fraud", "fraud")
    await create(registry, "churn", "growth")
    fraud_viewer = registry.auth(Role.VIEWER, ["fraud"])
    listing = await registry.client.get("/v1/models", headers=fraud_viewer)
    assert names(listing) == ["card-fraud"] and listing.json()["total"] == 1
    assert names(await registry.client.get("/v1/models?team=growth", headers=fraud_viewer)) == []
    hidden = await registry.client.get("/v1/models/churn", headers=fraud_viewer)
    assert (hidden.status_code, hidden.json()["field"]) == (403, "team")
    assert (await registry.client.get("/v1/models/churn/versions", headers=fraud_viewer)).status_code == 403
    everyone = registry.auth(Role.VIEWER, ["*"])
    assert names(await registry.client.get("/v1/models", headers=everyone)) == ["card-fraud", "churn"]


async def test_a_model_shows_its_latest_version_and_aliases(registry: RegistryHarness) -> None:
    await create(registry, "churn", "growth")
    admin = registry.auth()
    await upload_version(registry, "churn", admin, aliases=["champion"])
    await upload_version(registry, "churn", admin, artifact=skops_model(1))
    model = (await registry.client.get("/v1/models/churn", headers=admin)).json()
    assert (model["name"], model["team"], model["latest_version"]) == ("churn", "growth", 2)
    assert model["aliases"] == {"champion": 1}
    missing = await registry.client.get("/v1/models/nope", headers=admin)
    assert (missing.status_code, missing.json()["field"]) == (404, "model")


async def test_description_and_tags_can_be_updated(registry: RegistryHarness) -> None:
    created = await create(registry, "churn", "growth", description="v0", tags=["a"])
    ana = registry.auth(Role.SCIENTIST, ["growth"])
    r = await registry.client.patch(
        "/v1/models/churn", json={"description": "predicts churn", "tags": ["b", "c"]}, headers=ana
    )
    assert r.status_code == 200, r.text
    assert (r.json()["description"], r.json()["tags"]) == ("predicts churn", ["b", "c"])
    assert datetime.fromisoformat(r.json()["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    # Fields left out stay as they were.
    only_tags = await registry.client.patch("/v1/models/churn", json={"tags": []}, headers=ana)
    assert (only_tags.json()["description"], only_tags.json()["tags"]) == ("predicts churn", [])
    shown = (await registry.client.get("/v1/models/churn", headers=ana)).json()
    assert (shown["description"], shown["tags"]) == ("predicts churn", [])


async def test_a_models_name_and_team_cannot_be_changed(registry: RegistryHarness) -> None:
    await create(registry, "churn", "growth")
    for field, value in (("name", "renamed"), ("team", "fraud")):
        r = await registry.client.patch("/v1/models/churn", json={field: value}, headers=registry.auth())
        assert (r.status_code, r.json()["field"]) == (422, field)


async def test_archiving_hides_a_model_from_the_default_listing(registry: RegistryHarness) -> None:
    await create(registry, "old", "growth")
    await create(registry, "new", "growth")
    deployer = registry.auth(Role.DEPLOYER, ["growth"])
    archived = await registry.client.post("/v1/models/old/archive", headers=deployer)
    assert archived.status_code == 200 and archived.json()["archived"] is True
    admin = registry.auth()
    assert names(await registry.client.get("/v1/models", headers=admin)) == ["new"]
    assert names(await registry.client.get("/v1/models?include_archived=true", headers=admin)) == [
        "new",
        "old",
    ]
    # Archived, not deleted: it can still be looked up and brought back.
    assert (await registry.client.get("/v1/models/old", headers=admin)).json()["archived"] is True
    assert (await registry.client.post("/v1/models/old/unarchive", headers=deployer)).json()[
        "archived"
    ] is False
    assert names(await registry.client.get("/v1/models", headers=admin)) == ["new", "old"]


async def test_only_a_deployer_or_admin_archives_a_model(registry: RegistryHarness) -> None:
    await create(registry, "churn", "growth")
    scientist = registry.auth(Role.SCIENTIST, ["growth"])
    assert (await registry.client.post("/v1/models/churn/archive", headers=scientist)).status_code == 403
    assert (await registry.client.get("/v1/models/churn", headers=scientist)).json()["archived"] is False


async def test_an_archived_model_refuses_new_versions(registry: RegistryHarness) -> None:
    await create(registry, "old", "growth")
    admin = registry.auth()
    await registry.client.post("/v1/models/old/archive", headers=admin)
    refused = await upload_version(registry, "old", admin)
    assert (refused.status_code, refused.json()["field"]) == (409, "model")
    assert "archived" in refused.json()["detail"]
    assert (await registry.client.get("/v1/models/old/versions", headers=admin)).json()["total"] == 0
    await registry.client.post("/v1/models/old/unarchive", headers=admin)
    assert (await upload_version(registry, "old", admin)).status_code == 201
