"""Both artifact backends keep bytes content-addressed and answer the same way: a local directory
and a real S3 API server (moto) through the minio SDK; the registry runs on either."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleet_core.artifacts import ArtifactStore, SpooledUpload, artifact_store
from fleet_core.errors import NotFound, PayloadTooLarge
from fleet_core.settings import FleetSettings
from support.registry import running_registry, skops_model, upload_version, version_metadata

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return artifact_store((tmp_path / "artifacts").as_uri(), FleetSettings())
    s3 = request.getfixturevalue("s3_server")
    settings = FleetSettings(
        s3_endpoint=s3["endpoint"],
        s3_access_key=s3["access_key"],
        s3_secret_key=s3["secret_key"],
        s3_secure=False,
    )
    return artifact_store("s3://fleet-artifacts/prefix", settings)


def spooled(data: bytes, limit: int = 10_000_000) -> SpooledUpload:
    upload = SpooledUpload(limit)
    upload.write(data)
    return upload


async def test_store_put_get_exists_and_hash(store: ArtifactStore) -> None:
    data = b"model bytes" * 1000
    stored = await store.put_content_addressed("models/m", "model.skops", spooled(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.sha256 in stored.uri and stored.size_bytes == len(data)
    assert await store.get(stored.uri) == data
    assert await store.exists(stored.uri)
    assert (await store.sha256_of(stored.uri, 10**9)).sha256 == stored.sha256
    missing = stored.uri.replace(stored.sha256, "0" * 64)
    assert not await store.exists(missing)
    with pytest.raises(NotFound):
        await store.get(missing)


def test_spooled_upload_refuses_bytes_past_its_limit() -> None:
    upload = SpooledUpload(10)
    upload.write(b"x" * 10)
    with pytest.raises(PayloadTooLarge):
        upload.write(b"y")


async def test_registry_on_s3_uploads_downloads_and_registers_from_uri(
    s3_server: dict[str, str], tmp_path: Path
) -> None:
    async with running_registry(
        tmp_path,
        artifact_uri="s3://registry-bucket/fleet",
        s3_endpoint=s3_server["endpoint"],
        s3_access_key=s3_server["access_key"],
        s3_secret_key=s3_server["secret_key"],
        s3_secure=False,
    ) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        artifact = skops_model()
        v1 = await upload_version(h, "m", admin, artifact=artifact)
        assert v1.status_code == 201, v1.text
        assert v1.json()["artifact_uri"].startswith("s3://registry-bucket/fleet/models/m/")
        download = await h.client.get("/v1/models/m/versions/1/artifact", headers=admin)
        assert download.content == artifact
        body = {
            **version_metadata(),
            "artifact_uri": v1.json()["artifact_uri"],
            "sha256": v1.json()["sha256"],
        }
        v2 = await h.client.post("/v1/models/m/versions/from-uri", json=body, headers=admin)
        assert v2.status_code == 201 and v2.json()["version"] == 2
