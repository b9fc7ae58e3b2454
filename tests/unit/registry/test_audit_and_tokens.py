"""Every write is in the audit log (who, what, on which resource), which only admins read; admins
issue the bearer tokens that every service then accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness, skops_model, upload_version


async def test_every_write_is_audited_with_actor_action_and_resource(registry: RegistryHarness) -> None:
    ana = registry.auth(Role.SCIENTIST, ["growth"], subject="ana")
    dev = registry.auth(Role.DEPLOYER, ["growth"], subject="dev")
    root = registry.auth(Role.ADMIN, subject="root")
    client = registry.client

    await client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=ana)
    await client.patch("/v1/models/churn", json={"description": "d"}, headers=ana)
    await upload_version(registry, "churn", ana)
    await client.patch("/v1/models/churn/versions/1", json={"tags": ["ok"]}, headers=ana)
    await client.put("/v1/models/churn/aliases/champion", json={"version": 1}, headers=dev)
    await client.delete("/v1/models/churn/aliases/champion", headers=dev)
    await client.post("/v1/models/churn/archive", headers=dev)
    await client.post("/v1/models/churn/unarchive", headers=dev)
    await client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=ana)
    await client.post(
        "/v1/datasets/events/versions",
        data={"metadata": '{"row_count": 1}'},
        files={"file": ("e.csv", b"x\n1\n")},
        headers=ana,
    )
    issued = await client.post("/v1/tokens", json={"subject": "bot", "role": "viewer"}, headers=root)

    log = (await client.get("/v1/audit", headers=root)).json()
    assert log["total"] == 11
    assert [(e["actor"], e["role"], e["action"], e["resource"]) for e in reversed(log["items"])] == [
        ("ana", "scientist", "model.create", "models/churn"),
        ("ana", "scientist", "model.update", "models/churn"),
        ("ana", "scientist", "version.register", "models/churn/versions/1"),
        ("ana", "scientist", "version.update", "models/churn/versions/1"),
        ("dev", "deployer", "alias.set", "models/churn/aliases/champion"),
        ("dev", "deployer", "alias.delete", "models/churn/aliases/champion"),
        ("dev", "deployer", "model.archive", "models/churn"),
        ("dev", "deployer", "model.unarchive", "models/churn"),
        ("ana", "scientist", "dataset.create", "datasets/events"),
        ("ana", "scientist", "dataset.version.create", "datasets/events/versions/1"),
        ("root", "admin", "token.issue", f"tokens/{issued.json()['token_id']}"),
    ]


async def test_an_audit_entry_carries_the_details_and_the_request_id(registry: RegistryHarness) -> None:
    admin = registry.auth(subject="root")
    await registry.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
    v1 = await upload_version(registry, "churn", {**admin, "X-Request-ID": "req-77"}, artifact=skops_model(1))
    entry = (await registry.client.get("/v1/audit?action=version.register", headers=admin)).json()["items"][0]
    assert entry["request_id"] == "req-77"
    assert entry["detail"] == {
        "sha256": v1.json()["sha256"],
        "flavor": "sklearn",
        "event_id": v1.json()["event_id"],
    }
    assert datetime.now(UTC) - datetime.fromisoformat(entry["at"]) < timedelta(minutes=1)


async def test_reads_and_repeated_identical_dataset_uploads_are_not_writes(registry: RegistryHarness) -> None:
    admin = registry.auth()
    await registry.client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
    for _ in range(2):
        await registry.client.post(
            "/v1/datasets/events/versions",
            data={"metadata": '{"row_count": 1}'},
            files={"file": ("e.csv", b"x\n1\n")},
            headers=admin,
        )
    await registry.client.get("/v1/datasets/events/versions/1", headers=admin)
    actions = [e["action"] for e in (await registry.client.get("/v1/audit", headers=admin)).json()["items"]]
    assert actions == ["dataset.version.create", "dataset.create"]


async def test_the_audit_log_filters_by_actor_action_and_resource(registry: RegistryHarness) -> None:
    ana = registry.auth(Role.SCIENTIST, ["growth"], subject="ana")
    bob = registry.auth(Role.SCIENTIST, ["growth"], subject="bob")
    for name, who in (("churn", ana), ("upsell", bob)):
        await registry.client.post("/v1/models", json={"name": name, "team": "growth"}, headers=who)
        await upload_version(registry, name, who)
    admin = registry.auth()

    async def resources(query: str) -> list[str]:
        page = (await registry.client.get(f"/v1/audit?{query}", headers=admin)).json()
        return [e["resource"] for e in page["items"]]

    assert await resources("actor=bob") == ["models/upsell/versions/1", "models/upsell"]
    assert await resources("action=version") == ["models/upsell/versions/1", "models/churn/versions/1"]
    assert await resources("action=model.create") == ["models/upsell", "models/churn"]
    assert await resources("resource=models/churn") == ["models/churn/versions/1", "models/churn"]
    assert await resources("limit=1&offset=1") == ["models/upsell"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SCIENTIST, Role.DEPLOYER])
async def test_only_admins_read_the_audit_log_and_issue_or_list_tokens(
    registry: RegistryHarness, role: Role
) -> None:
    headers = registry.auth(role, ["*"])
    assert (await registry.client.get("/v1/audit", headers=headers)).status_code == 403
    body = {"subject": "me-as-admin", "role": "admin", "teams": ["*"]}
    assert (await registry.client.post("/v1/tokens", json=body, headers=headers)).status_code == 403
    assert (await registry.client.get("/v1/tokens", headers=headers)).status_code == 403
    assert (await registry.client.get("/v1/tokens", headers=registry.auth())).json()["total"] == 0


async def test_an_admin_issues_a_token_that_then_works_with_its_role(registry: RegistryHarness) -> None:
    body = {"subject": "ci-bot", "role": "scientist", "teams": ["growth"], "ttl_days": 1}
    issued = await registry.client.post("/v1/tokens", json=body, headers=registry.auth())
    assert issued.status_code == 201, issued.text
    token = issued.json()
    assert (token["subject"], token["role"], token["teams"]) == ("ci-bot", "scientist", ["growth"])
    expires = datetime.fromisoformat(token["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(days=1)

    bot = {"Authorization": f"Bearer {token['token']}"}
    created = await registry.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=bot)
    assert created.status_code == 201 and created.json()["created_by"] == "ci-bot"
    assert (await upload_version(registry, "churn", bot)).status_code == 201
    # A scientist of growth, nothing more: not another team, not archiving, not admin work.
    other_team = await registry.client.post("/v1/models", json={"name": "x", "team": "fraud"}, headers=bot)
    assert other_team.status_code == 403
    assert (await registry.client.post("/v1/models/churn/archive", headers=bot)).status_code == 403
    assert (await registry.client.post("/v1/tokens", json=body, headers=bot)).status_code == 403


async def test_issued_tokens_are_listed_without_their_secret(registry: RegistryHarness) -> None:
    admin = registry.auth(subject="root")
    forever = {"subject": "monitor", "role": "viewer", "teams": ["*"], "ttl_days": None}
    issued = (await registry.client.post("/v1/tokens", json=forever, headers=admin)).json()
    assert issued["expires_at"] is None
    listed = (await registry.client.get("/v1/tokens", headers=admin)).json()
    assert listed["total"] == 1
    entry = listed["items"][0]
    assert (entry["token_id"], entry["subject"], entry["role"], entry["issued_by"]) == (
        issued["token_id"],
        "monitor",
        "viewer",
        "root",
    )
    assert issued["token"] not in json.dumps(listed)


async def test_a_token_request_naming_an_unknown_role_is_a_422(registry: RegistryHarness) -> None:
    body = {"subject": "x", "role": "superuser"}
    r = await registry.client.post("/v1/tokens", json=body, headers=registry.auth())
    assert (r.status_code, r.json()["field"]) == (422, "role")
