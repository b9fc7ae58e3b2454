"""What users rely on in the registry: listing and filtering, archiving, aliases, datasets that
version by content, the audit trail, token issuance, and the service's own endpoints."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fleet_core.auth import Role
from support.registry import running_registry, skops_model, upload_version


async def test_listing_filters_by_team_tag_and_name_and_pages(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        admin = h.auth()
        for i in range(5):
            body = {"name": f"model-{i}", "team": "a" if i < 3 else "b", "tags": ["nlp"] if i % 2 else []}
            assert (await h.client.post("/v1/models", json=body, headers=admin)).status_code == 201
        page = (await h.client.get("/v1/models?limit=2&offset=2", headers=admin)).json()
        assert (page["total"], [m["name"] for m in page["items"]]) == (5, ["model-2", "model-3"])
        by_team = (await h.client.get("/v1/models?team=b", headers=admin)).json()
        assert [m["name"] for m in by_team["items"]] == ["model-3", "model-4"]
        tagged = (await h.client.get("/v1/models?tag=nlp", headers=admin)).json()
        assert [m["name"] for m in tagged["items"]] == ["model-1", "model-3"]
        named = (await h.client.get("/v1/models?name=-4", headers=admin)).json()
        assert [m["name"] for m in named["items"]] == ["model-4"]
        viewer_b = (await h.client.get("/v1/models", headers=h.auth(Role.VIEWER, ["b"]))).json()
        assert [m["name"] for m in viewer_b["items"]] == ["model-3", "model-4"]


async def test_archived_models_leave_the_listing_and_take_no_versions(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "old", "team": "a"}, headers=admin)
        assert (await h.client.post("/v1/models/old/archive", headers=admin)).json()["archived"] is True
        assert (await h.client.get("/v1/models", headers=admin)).json()["total"] == 0
        assert (await h.client.get("/v1/models?include_archived=true", headers=admin)).json()["total"] == 1
        refused = await upload_version(h, "old", admin)
        assert refused.status_code == 409 and refused.json()["field"] == "model"


async def test_versions_number_up_aliases_move_and_artifacts_download_intact(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "a"}, headers=admin)
        first, second = skops_model(1), skops_model(2)
        v1 = (await upload_version(h, "m", admin, artifact=first, aliases=["champion"])).json()
        v2 = (await upload_version(h, "m", admin, artifact=second)).json()
        assert (v1["version"], v2["version"]) == (1, 2)
        assert v2["sha256"] == hashlib.sha256(second).hexdigest()
        moved = await h.client.put("/v1/models/m/aliases/champion", json={"version": 2}, headers=admin)
        assert moved.json()["aliases"] == ["champion"]
        assert (await h.client.get("/v1/models/m", headers=admin)).json()["aliases"] == {"champion": 2}
        assert (await h.client.delete("/v1/models/m/aliases/champion", headers=admin)).status_code == 204
        assert (await h.client.get("/v1/models/m/aliases/champion", headers=admin)).status_code == 404
        download = await h.client.get("/v1/models/m/versions/1/artifact", headers=admin)
        assert download.content == first and download.headers["x-fleet-sha256"] == v1["sha256"]


async def test_dataset_versions_are_identified_by_content(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        admin = h.auth()
        await h.client.post("/v1/datasets", json={"name": "events", "team": "a"}, headers=admin)

        async def upload(data: bytes):  # type: ignore[no-untyped-def]
            return await h.client.post(
                "/v1/datasets/events/versions",
                data={"metadata": '{"row_count": 2, "format": "csv"}'},
                files={"file": ("e.csv", data)},
                headers=admin,
            )

        one = await upload(b"x\n1\n2\n")
        same = await upload(b"x\n1\n2\n")
        two = await upload(b"x\n1\n3\n")
        assert (one.status_code, same.status_code, two.status_code) == (201, 200, 201)
        assert (
            same.json()["version"] == 1
            and one.json()["content_hash"] == hashlib.sha256(b"x\n1\n2\n").hexdigest()
        )
        assert two.json()["version"] == 2 and two.json()["parent_version"] == 1
        content = await h.client.get("/v1/datasets/events/versions/2/content", headers=admin)
        assert content.content == b"x\n1\n3\n"


async def test_every_write_is_audited_and_only_admins_read_the_log(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        ana = h.auth(Role.SCIENTIST, ["a"], subject="ana")
        await h.client.post("/v1/models", json={"name": "m", "team": "a"}, headers=ana)
        await upload_version(h, "m", ana)
        await h.client.patch("/v1/models/m", json={"description": "d"}, headers=ana)
        log = (await h.client.get("/v1/audit?actor=ana", headers=h.auth())).json()["items"]
        assert [(e["action"], e["resource"]) for e in reversed(log)] == [
            ("model.create", "models/m"),
            ("version.register", "models/m/versions/1"),
            ("model.update", "models/m"),
        ]
        assert (await h.client.get("/v1/audit", headers=ana)).status_code == 403


async def test_admins_issue_tokens_that_carry_their_role(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        body = {"subject": "ci-bot", "role": "scientist", "teams": ["a"], "ttl_days": 1}
        issued = await h.client.post("/v1/tokens", json=body, headers=h.auth())
        assert issued.status_code == 201
        bot = {"Authorization": f"Bearer {issued.json()['token']}"}
        assert (
            await h.client.post("/v1/models", json={"name": "m", "team": "a"}, headers=bot)
        ).status_code == 201
        assert (
            await h.client.post("/v1/models", json={"name": "n", "team": "b"}, headers=bot)
        ).status_code == 403
        assert (await h.client.post("/v1/tokens", json=body, headers=bot)).status_code == 403
        listed = (await h.client.get("/v1/tokens", headers=h.auth())).json()["items"]
        assert [t["subject"] for t in listed] == ["ci-bot"] and "token" not in listed[0]


async def test_service_endpoints_openapi_metrics_and_request_ids(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        paths = (await h.client.get("/openapi.json")).json()["paths"]
        assert {"/v1/models", "/v1/models/{name}/versions", "/v1/datasets", "/v1/audit", "/v1/tokens"} <= set(
            paths
        )
        await h.client.get("/v1/models", headers=h.auth())
        metrics = (await h.client.get("/metrics")).text
        assert (
            'fleet_http_requests_total{method="GET",route="/v1/models",service="registry",status="200"}'
            in metrics
        )
        r = await h.client.get("/v1/models/none", headers={**h.auth(), "X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123" and r.json()["request_id"] == "abc-123"
