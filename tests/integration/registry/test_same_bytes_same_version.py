"""Registering bytes a model already holds is answered with the version that holds them, on SQLite
and PostgreSQL, sequentially and concurrently: CI re-runs register nothing twice (ADR 0024)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.registry import (
    SIGNATURE,
    RegistryHarness,
    running_registry,
    skops_model,
    upload_version,
    version_metadata,
)

pytestmark = pytest.mark.integration


async def state(h: RegistryHarness, model: str = "m") -> tuple[list[int], int, int]:
    """Version numbers of ``model``, `version.register` audit entries and staged events."""
    admin = h.auth()
    versions = (await h.client.get(f"/v1/models/{model}/versions?limit=500", headers=admin)).json()["items"]
    audited = (await h.client.get("/v1/audit?action=version.register&limit=500", headers=admin)).json()[
        "total"
    ]
    return sorted(v["version"] for v in versions), audited, await h.app.state.relay.pending()


async def upload(h: RegistryHarness, artifact: bytes, **meta: Any) -> httpx.Response:
    return await upload_version(h, "m", h.auth(), artifact=artifact, **meta)


async def test_the_same_bytes_again_return_the_existing_version_and_change_nothing(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=h.auth())
        artifact = skops_model(1)
        first = await upload(h, artifact, aliases=["champion"])
        assert (first.status_code, first.headers["X-Fleet-Registration"]) == (201, "created")
        before = await state(h)

        again = await upload(h, artifact, metrics={"accuracy": 0.5}, tags=["rerun"], aliases=["other"])
        assert (again.status_code, again.headers["X-Fleet-Registration"]) == (200, "existing")
        # The version as it was: nothing the repeat carried (metrics, tags, aliases) was applied.
        assert again.json() == first.json()
        assert await state(h) == before == ([1], 1, 1)
        model = (await h.client.get("/v1/models/m", headers=h.auth())).json()
        assert model["aliases"] == {"champion": 1}

        # Other bytes are a new version, as always.
        other = await upload(h, skops_model(2))
        assert (other.status_code, other.json()["version"]) == (201, 2)
        # ... and repeating version 1's bytes still answers with version 1, not the latest.
        assert (await upload(h, artifact)).json()["version"] == 1


async def test_a_registration_by_uri_of_held_bytes_returns_the_existing_version(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        v1 = (await upload(h, skops_model(3))).json()
        body = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": v1["sha256"]}
        r = await h.client.post("/v1/models/m/versions/from-uri", json=body, headers=admin)
        assert (r.status_code, r.headers["X-Fleet-Registration"], r.json()["version"]) == (200, "existing", 1)
        assert await state(h) == ([1], 1, 1)


async def test_an_explicit_unused_number_registers_the_same_bytes_again(db_url: str, tmp_path: Path) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=h.auth())
        artifact = skops_model(4)
        assert (await upload(h, artifact)).status_code == 201
        on_purpose = await upload(h, artifact, version=5)
        assert (on_purpose.status_code, on_purpose.json()["version"]) == (201, 5)
        # Re-running that explicit registration is idempotent too (when it says which bytes it
        # means, the refusal of a taken number comes before any upload is stored).
        digest = hashlib.sha256(artifact).hexdigest()
        rerun = await upload(h, artifact, version=5, sha256=digest)
        assert (rerun.status_code, rerun.json()["version"]) == (200, 5)
        # A taken number with other bytes is still a conflict.
        taken = await upload(h, skops_model(5), version=5)
        assert (taken.status_code, taken.json()["field"]) == (409, "version")
        assert await state(h) == ([1, 5], 2, 2)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signature": {**SIGNATURE, "outputs": [{"name": "score", "type": "float"}]}}, "signature"),
        ({"origin": "retrain", "parent_version": 1}, "origin"),
    ],
)
async def test_held_bytes_with_another_contract_or_lineage_are_a_conflict_naming_the_field(
    db_url: str, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=h.auth())
        artifact = skops_model(6)
        assert (await upload(h, artifact)).status_code == 201
        r = await upload(h, artifact, **change)
        assert (r.status_code, r.json()["field"]) == (409, field), r.text
        assert "already holds these bytes" in r.json()["detail"] and "version" in r.json()["detail"]
        assert await state(h) == ([1], 1, 1)


async def test_concurrent_registrations_of_the_same_bytes_make_one_version(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        artifact = skops_model(7)
        meta = json.dumps(version_metadata())

        async def post() -> httpx.Response:
            return await h.client.post(
                "/v1/models/m/versions",
                data={"metadata": meta},
                files={"artifact": ("model.skops", io.BytesIO(artifact))},
                headers=admin,
            )

        racing = await asyncio.gather(*(post() for _ in range(6)))
        assert sorted(r.status_code for r in racing) == [200] * 5 + [201], [r.text for r in racing]
        assert {r.json()["version"] for r in racing} == {1}
        assert await state(h) == ([1], 1, 1)


async def test_the_same_bytes_under_another_model_are_that_models_own_version(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        for name in ("a", "b"):
            await h.client.post("/v1/models", json={"name": name, "team": "t"}, headers=admin)
        artifact = skops_model(8)
        for name in ("a", "b"):
            r = await upload_version(h, name, admin, artifact=artifact)
            assert (r.status_code, r.json()["version"]) == (201, 1)
