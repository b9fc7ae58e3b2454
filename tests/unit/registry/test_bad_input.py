"""Bad requests get a problem+json that names the field or reason, and change nothing."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness, running_registry, skops_model, upload_version, version_metadata


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryHarness]:
    async with running_registry(tmp_path, max_artifact_mb=0.05) as h:
        admin = h.auth()
        for name, team in (("alpha-model", "alpha"), ("beta-model", "beta")):
            r = await h.client.post("/v1/models", json={"name": name, "team": team}, headers=admin)
            assert r.status_code == 201
        assert (await upload_version(h, "alpha-model", admin)).status_code == 201
        yield h


async def snapshot(h: RegistryHarness) -> str:
    """Everything a bad request could have changed."""
    admin = h.auth()
    parts = [(await h.client.get("/v1/models?include_archived=true", headers=admin)).json()]
    for name in ("alpha-model", "beta-model"):
        parts.append((await h.client.get(f"/v1/models/{name}/versions", headers=admin)).json())
    parts.append((await h.client.get("/v1/audit?limit=500", headers=admin)).json()["total"])
    parts.append(await h.app.state.relay.pending())
    return json.dumps(parts, sort_keys=True)


def assert_problem(response, status: int, field: str | None = None, kind: str | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    if field is not None:
        assert body.get("field") == field, body
    if kind is not None:
        assert body["type"].endswith(f"/{kind}")
    return body  # type: ignore[no-any-return]


async def test_malformed_json_is_a_400_and_changes_nothing(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await registry.client.post(
        "/v1/models",
        content=b'{"name": "x", "team":',
        headers={**registry.auth(), "content-type": "application/json"},
    )
    assert_problem(r, 400, kind="malformed-json")
    assert await snapshot(registry) == before


async def test_wrong_types_are_a_422_naming_the_field(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await registry.client.post(
        "/v1/models", json={"name": "ok-name", "team": 42}, headers=registry.auth()
    )
    assert_problem(r, 422, field="team")
    bad_meta = version_metadata(metrics={"accuracy": "high"})
    r = await registry.client.post(
        "/v1/models/alpha-model/versions",
        data={"metadata": json.dumps(bad_meta)},
        files={"artifact": ("m", io.BytesIO(skops_model()))},
        headers=registry.auth(),
    )
    assert_problem(r, 422, field="metadata.metrics.accuracy")
    assert await snapshot(registry) == before


async def test_unknown_model_is_a_404(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    assert_problem(await registry.client.get("/v1/models/nope", headers=registry.auth()), 404, field="model")
    assert_problem(await upload_version(registry, "nope", registry.auth()), 404, field="model")
    assert_problem(
        await registry.client.get("/v1/models/alpha-model/versions/9", headers=registry.auth()),
        404,
        field="version",
    )
    assert await snapshot(registry) == before


async def test_duplicate_version_is_a_409(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await upload_version(registry, "alpha-model", registry.auth(), artifact=skops_model(5), version=1)
    assert_problem(r, 409, field="version")
    assert await snapshot(registry) == before


async def test_artifact_over_the_size_limit_is_a_413(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await upload_version(registry, "alpha-model", registry.auth(), artifact=b"\0" * 60_000)
    assert_problem(r, 413, field="artifact")
    assert await snapshot(registry) == before


async def test_sha256_mismatch_on_a_uri_registration_is_a_422(registry: RegistryHarness) -> None:
    v1 = (await registry.client.get("/v1/models/alpha-model/versions/1", headers=registry.auth())).json()
    before = await snapshot(registry)
    body = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": "0" * 64}
    r = await registry.client.post(
        "/v1/models/beta-model/versions/from-uri", json=body, headers=registry.auth()
    )
    assert "mismatch" in assert_problem(r, 422, field="sha256")["detail"]
    assert await snapshot(registry) == before
    body["sha256"] = v1["sha256"]
    ok = await registry.client.post(
        "/v1/models/beta-model/versions/from-uri", json=body, headers=registry.auth()
    )
    assert ok.status_code == 201, ok.text


async def test_a_raw_pickle_is_refused_as_an_sklearn_artifact(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await upload_version(registry, "alpha-model", registry.auth(), artifact=pickle.dumps({"a": 1}))
    assert_problem(r, 422, field="artifact")
    assert await snapshot(registry) == before


async def test_example_input_outside_the_signature_is_a_422_naming_the_field(
    registry: RegistryHarness,
) -> None:
    before = await snapshot(registry)
    r = await upload_version(
        registry, "alpha-model", registry.auth(), example_input=[{"x0": 99.0, "x1": 0.0}]
    )
    assert_problem(r, 422, field="example_input.x0")
    assert await snapshot(registry) == before


async def test_a_viewer_cannot_register(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await upload_version(registry, "alpha-model", registry.auth(Role.VIEWER, ["alpha"]))
    assert_problem(r, 403, kind="forbidden")
    assert await snapshot(registry) == before


async def test_a_scientist_of_team_a_cannot_modify_team_b_models(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    scientist = registry.auth(Role.SCIENTIST, ["alpha"])
    assert_problem(await upload_version(registry, "beta-model", scientist), 403, field="team")
    r = await registry.client.patch(
        "/v1/models/beta-model", json={"description": "mine now"}, headers=scientist
    )
    assert_problem(r, 403, field="team")
    assert await snapshot(registry) == before
    assert (
        await upload_version(registry, "alpha-model", scientist, artifact=skops_model(9))
    ).status_code == 201


async def test_no_token_or_a_bad_token_is_a_401(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    assert_problem(await registry.client.get("/v1/models"), 401, kind="unauthorized")
    r = await registry.client.post(
        "/v1/models", json={"name": "x", "team": "alpha"}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert_problem(r, 401, kind="unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert await snapshot(registry) == before


async def test_a_registered_version_is_immutable(registry: RegistryHarness) -> None:
    before = await snapshot(registry)
    r = await registry.client.patch(
        "/v1/models/alpha-model/versions/1", json={"sha256": "f" * 64}, headers=registry.auth()
    )
    body = assert_problem(r, 422)
    assert "sha256 is frozen" in body["detail"]
    assert await snapshot(registry) == before
    ok = await registry.client.patch(
        "/v1/models/alpha-model/versions/1", json={"tags": ["reviewed"]}, headers=registry.auth()
    )
    assert ok.status_code == 200 and ok.json()["tags"] == ["reviewed"]
