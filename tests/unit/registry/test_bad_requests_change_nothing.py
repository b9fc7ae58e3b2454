"""Bad requests are refused with an RFC 9457 problem (type, title, status, detail, instance) that
names the field or the reason, and leave the registry exactly as it was: no model, version,
alias, dataset version, audit entry, token, outbox event or artifact file appears or changes."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_core.auth import Role, TokenAuthority
from support.registry import RegistryHarness, running_registry, skops_model, upload_version, version_metadata

PROBLEMS = "https://modelfleet.dev/problems/"
LIMIT_MB = 0.01  # max_artifact_mb: 10,485 bytes


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryHarness]:
    """Team alpha's `alpha-model` and team beta's `beta-model`, each with version 1, and a dataset."""
    async with running_registry(tmp_path, max_artifact_mb=LIMIT_MB) as h:
        admin = h.auth()
        for name, team in (("alpha-model", "alpha"), ("beta-model", "beta")):
            assert (
                await h.client.post("/v1/models", json={"name": name, "team": team}, headers=admin)
            ).is_success
            assert (await upload_version(h, name, admin, aliases=["champion"])).status_code == 201
        await h.client.post("/v1/datasets", json={"name": "events", "team": "alpha"}, headers=admin)
        yield h


def assert_problem(
    response: httpx.Response, status: int, *, field: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem with ``status``, naming ``field`` (when given), of type ``kind``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body), body
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith(PROBLEMS)
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert body.get("field") == field, body
    if kind is not None:
        assert body["type"] == PROBLEMS + kind, body
    return body


async def registry_state(h: RegistryHarness) -> dict[str, Any]:
    """Everything a refused request could have changed."""
    admin, get = h.auth(), h.client.get
    state: dict[str, Any] = {
        "models": (await get("/v1/models?include_archived=true", headers=admin)).json(),
        "datasets": (await get("/v1/datasets", headers=admin)).json(),
        # A refused request is itself audited (outcome denied or rejected); it changes no record.
        "audit": (await get("/v1/audit?limit=500&outcome=ok", headers=admin)).json(),
        "tokens": (await get("/v1/tokens", headers=admin)).json(),
        "outbox_pending": await h.app.state.relay.pending(),
        "artifact_files": sorted(str(p) for p in (h.settings.home / "artifacts").rglob("*")),
    }
    for model in state["models"]["items"]:
        state[f"model versions of {model['name']}"] = (
            await get(f"/v1/models/{model['name']}/versions", headers=admin)
        ).json()
    for dataset in state["datasets"]["items"]:
        state[f"dataset versions of {dataset['name']}"] = (
            await get(f"/v1/datasets/{dataset['name']}/versions", headers=admin)
        ).json()
    return state


@asynccontextmanager
async def nothing_changes(h: RegistryHarness) -> AsyncIterator[None]:
    before = await registry_state(h)
    yield
    assert await registry_state(h) == before, "a refused request changed the registry"


async def test_a_malformed_json_body_is_a_400(registry: RegistryHarness) -> None:
    admin = {**registry.auth(), "content-type": "application/json"}
    async with nothing_changes(registry):
        r = await registry.client.post("/v1/models", content=b'{"name": "x", "team":', headers=admin)
        assert_problem(r, 400, kind="malformed-json")
        r = await registry.client.patch("/v1/models/alpha-model", content=b"{tags: [}", headers=admin)
        assert_problem(r, 400, kind="malformed-json")
        r = await registry.client.post(
            "/v1/models/alpha-model/versions",
            data={"metadata": '{"flavor": "sklearn",'},
            files={"artifact": ("m", io.BytesIO(skops_model(1)))},
            headers=registry.auth(),
        )
        assert (
            "not valid JSON" in assert_problem(r, 400, field="metadata", kind="malformed-request")["detail"]
        )


async def test_wrong_types_are_a_422_naming_the_field(registry: RegistryHarness) -> None:
    admin = registry.auth()
    async with nothing_changes(registry):
        r = await registry.client.post("/v1/models", json={"name": "ok-name", "team": 42}, headers=admin)
        assert_problem(r, 422, field="team", kind="validation-error")
        r = await registry.client.post(
            "/v1/models", json={"name": "Bad Name!", "team": "alpha"}, headers=admin
        )
        assert_problem(r, 422, field="name")
        r = await registry.client.patch("/v1/models/alpha-model", json={"tags": "not-a-list"}, headers=admin)
        assert_problem(r, 422, field="tags")
        r = await registry.client.put(
            "/v1/models/alpha-model/aliases/champion", json={"version": "two"}, headers=admin
        )
        assert_problem(r, 422, field="version")
        r = await registry.client.get("/v1/models?limit=lots", headers=admin)
        assert_problem(r, 422, field="limit")
        r = await registry.client.post(
            "/v1/models/alpha-model/versions",
            data={"metadata": json.dumps(version_metadata(metrics={"accuracy": "high"}))},
            files={"artifact": ("m", io.BytesIO(skops_model(1)))},
            headers=admin,
        )
        body = assert_problem(r, 422, field="metadata.metrics.accuracy", kind="invalid-input")
        assert body["errors"][0]["field"] == "metadata.metrics.accuracy"
        r = await upload_version(registry, "alpha-model", admin, artifact=skops_model(1), flavor="tensorflow")
        assert_problem(r, 422, field="metadata.flavor")
        from_uri = {**version_metadata(), "artifact_uri": "file:///x", "sha256": "not-a-hash"}
        r = await registry.client.post(
            "/v1/models/alpha-model/versions/from-uri", json=from_uri, headers=admin
        )
        assert_problem(r, 422, field="sha256")


async def test_an_unknown_model_is_a_404(registry: RegistryHarness) -> None:
    admin = registry.auth()
    client = registry.client
    async with nothing_changes(registry):
        assert_problem(
            await client.get("/v1/models/nope", headers=admin), 404, field="model", kind="not-found"
        )
        assert_problem(await upload_version(registry, "nope", admin), 404, field="model")
        assert_problem(
            await client.patch("/v1/models/nope", json={"tags": []}, headers=admin), 404, field="model"
        )
        r = await client.put("/v1/models/nope/aliases/champion", json={"version": 1}, headers=admin)
        assert_problem(r, 404, field="model")
        assert_problem(await client.post("/v1/models/nope/archive", headers=admin), 404, field="model")
        r = await client.get("/v1/models/alpha-model/versions/9", headers=admin)
        assert_problem(r, 404, field="version")
        r = await client.patch("/v1/models/alpha-model/versions/9", json={"tags": []}, headers=admin)
        assert_problem(r, 404, field="version")
        assert_problem(await client.get("/v1/datasets/nope", headers=admin), 404, field="dataset")


async def test_a_duplicate_version_is_a_409(registry: RegistryHarness) -> None:
    async with nothing_changes(registry):
        r = await upload_version(registry, "alpha-model", registry.auth(), artifact=skops_model(5), version=1)
        body = assert_problem(r, 409, field="version", kind="conflict")
        assert "already has version 1" in body["detail"]


async def test_an_artifact_over_the_size_limit_is_a_413(registry: RegistryHarness) -> None:
    async with nothing_changes(registry):
        r = await upload_version(registry, "alpha-model", registry.auth(), artifact=b"\0" * 20_000)
        body = assert_problem(r, 413, field="artifact", kind="payload-too-large")
        assert "10485 bytes" in body["detail"]


async def test_a_body_larger_than_any_upload_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # The request as a whole is capped at the largest upload allowed plus 1 MiB of form overhead.
    async with running_registry(tmp_path, max_artifact_mb=LIMIT_MB, max_dataset_mb=LIMIT_MB) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "alpha"}, headers=admin)
        async with nothing_changes(h):
            r = await upload_version(h, "m", admin, artifact=b"\0" * (2 * 2**20))
            assert "exceeds the limit" in assert_problem(r, 413, kind="payload-too-large")["detail"]


async def test_a_sha256_mismatch_on_a_uri_registration_is_a_422(registry: RegistryHarness) -> None:
    admin = registry.auth()
    v1 = (await registry.client.get("/v1/models/alpha-model/versions/1", headers=admin)).json()
    body = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": "0" * 64}
    async with nothing_changes(registry):
        r = await registry.client.post("/v1/models/alpha-model/versions/from-uri", json=body, headers=admin)
        assert "sha256 mismatch" in assert_problem(r, 422, field="sha256", kind="invalid-input")["detail"]


async def test_an_unsafe_or_inconsistent_version_is_a_422(registry: RegistryHarness) -> None:
    admin = registry.auth()
    async with nothing_changes(registry):
        r = await upload_version(registry, "alpha-model", admin, artifact=pickle.dumps({"a": 1}))
        assert_problem(r, 422, field="artifact")
        r = await upload_version(registry, "alpha-model", admin, example_input=[{"x0": 99.0, "x1": 0.0}])
        assert_problem(r, 422, field="example_input.x0")
        upload = skops_model(2)
        r = await upload_version(
            registry, "alpha-model", admin, artifact=upload, sha256=hashlib.sha256(b"x").hexdigest()
        )
        assert_problem(r, 422, field="sha256")
        r = await registry.client.patch(
            "/v1/models/alpha-model/versions/1", json={"flavor": "onnx"}, headers=admin
        )
        assert_problem(r, 422, field="flavor")


async def test_a_viewer_cannot_register_a_version(registry: RegistryHarness) -> None:
    viewer = registry.auth(Role.VIEWER, ["alpha"])
    async with nothing_changes(registry):
        r = await upload_version(registry, "alpha-model", viewer, artifact=skops_model(3))
        assert "'scientist' or higher is required" in assert_problem(r, 403, kind="forbidden")["detail"]
        v1 = (await registry.client.get("/v1/models/alpha-model/versions/1", headers=viewer)).json()
        from_uri = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": v1["sha256"]}
        r = await registry.client.post(
            "/v1/models/alpha-model/versions/from-uri", json=from_uri, headers=viewer
        )
        assert_problem(r, 403, kind="forbidden")


async def test_a_scientist_of_team_a_cannot_modify_team_bs_model(registry: RegistryHarness) -> None:
    alpha = registry.auth(Role.SCIENTIST, ["alpha"])
    client = registry.client
    async with nothing_changes(registry):
        assert_problem(
            await upload_version(registry, "beta-model", alpha, artifact=skops_model(4)), 403, field="team"
        )
        r = await client.patch("/v1/models/beta-model", json={"description": "mine now"}, headers=alpha)
        assert_problem(r, 403, field="team")
        r = await client.patch("/v1/models/beta-model/versions/1", json={"tags": ["mine"]}, headers=alpha)
        assert_problem(r, 403, field="team")
        r = await client.put("/v1/models/beta-model/aliases/champion", json={"version": 1}, headers=alpha)
        assert_problem(r, 403, field="team")
        assert_problem(
            await client.delete("/v1/models/beta-model/aliases/champion", headers=alpha), 403, field="team"
        )
    # The same scientist works freely on their own team's model.
    assert (await upload_version(registry, "alpha-model", alpha, artifact=skops_model(9))).status_code == 201


def foreign_tokens() -> dict[str, str]:
    """Tokens the registry must not accept."""
    stranger = TokenAuthority("another-secret-that-is-long-enough-for-hs256-000")
    return {
        "not a JWT": "not-a-jwt",
        "signed with another secret": stranger.issue("mallory", Role.ADMIN, ["*"])[0],
    }


async def test_no_token_or_a_bad_token_is_a_401(registry: RegistryHarness) -> None:
    expired, _, _ = registry.tokens.issue("old", Role.ADMIN, ["*"], ttl=timedelta(seconds=-1))
    attempts: dict[str, dict[str, str]] = {
        "no token": {},
        "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "expired": {"Authorization": f"Bearer {expired}"},
        **{reason: {"Authorization": f"Bearer {token}"} for reason, token in foreign_tokens().items()},
    }
    async with nothing_changes(registry):
        for reason, headers in attempts.items():
            r = await registry.client.post("/v1/models", json={"name": "x", "team": "alpha"}, headers=headers)
            assert_problem(r, 401, kind="unauthorized")
            assert r.headers["www-authenticate"] == "Bearer", reason
            r = await upload_version(registry, "alpha-model", headers, artifact=skops_model(6))
            assert_problem(r, 401, kind="unauthorized")
    assert (
        "expired" in (await registry.client.get("/v1/models", headers=attempts["expired"])).json()["detail"]
    )
