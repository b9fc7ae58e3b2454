"""Both artifact backends keep bytes content-addressed and answer the same way: a local directory
(``file://``) and a real S3 API server (moto) through the minio SDK (``s3://``), each chosen by
``artifact_store`` from the URI scheme and the FLEET_S3_* settings."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from fleet_core.artifacts import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    SpooledUpload,
    artifact_store,
)
from fleet_core.errors import NotFound, PayloadTooLarge
from fleet_core.settings import FleetSettings

DATA = b"model bytes " * 100_000  # ~1.2 MB: more than one chunk


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    if request.param == "file":
        return artifact_store((tmp_path / "artifacts").as_uri(), FleetSettings())
    s3: dict[str, str] = request.getfixturevalue("s3_server")
    monkeypatch.setenv("FLEET_S3_ENDPOINT", s3["endpoint"])
    monkeypatch.setenv("FLEET_S3_ACCESS_KEY", s3["access_key"])
    monkeypatch.setenv("FLEET_S3_SECRET_KEY", s3["secret_key"])
    monkeypatch.setenv("FLEET_S3_REGION", s3["region"])
    return artifact_store("s3://fleet-artifacts/prefix", FleetSettings())


def spooled(data: bytes, limit: int = 10_000_000) -> SpooledUpload:
    upload = SpooledUpload(limit)
    for i in range(0, len(data), 64 * 1024):
        upload.write(data[i : i + 64 * 1024])
    return upload


def test_the_uri_scheme_chooses_the_backend(store: ArtifactStore) -> None:
    expected = LocalArtifactStore if store.base_uri.startswith("file://") else S3ArtifactStore
    assert isinstance(store, expected)
    with pytest.raises(ValueError, match="unsupported"):
        artifact_store("ftp://host/dir", FleetSettings())


async def test_stored_bytes_come_back_under_a_uri_that_carries_their_sha256(store: ArtifactStore) -> None:
    stored = await store.put_content_addressed("models/churn", "model.skops", spooled(DATA))

    assert stored.sha256 == hashlib.sha256(DATA).hexdigest()
    assert stored.size_bytes == len(DATA)
    assert stored.uri.endswith(f"/models/churn/{stored.sha256}/model.skops")
    assert store.owns(stored.uri)
    assert await store.get(stored.uri) == DATA
    assert await store.exists(stored.uri)
    assert b"".join([chunk async for chunk in store.stream(stored.uri)]) == DATA


async def test_the_same_bytes_are_stored_once_under_the_same_uri(store: ArtifactStore) -> None:
    first = await store.put_content_addressed("models/m", "model.skops", spooled(b"same"))
    second = await store.put_content_addressed("models/m", "model.skops", spooled(b"same"))
    other = await store.put_content_addressed("models/m", "model.skops", spooled(b"different"))
    assert first == second
    assert other.uri != first.uri
    assert await store.get(first.uri) == b"same"


async def test_sha256_of_hashes_what_is_stored_and_refuses_more_than_the_limit(store: ArtifactStore) -> None:
    stored = await store.put_content_addressed("datasets/d", "data.parquet", spooled(DATA))
    verified = await store.sha256_of(stored.uri, max_bytes=len(DATA))
    assert verified == stored
    with pytest.raises(PayloadTooLarge):
        await store.sha256_of(stored.uri, max_bytes=len(DATA) - 1)


async def test_a_missing_artifact_is_not_found(store: ArtifactStore) -> None:
    stored = await store.put_content_addressed("models/m", "model.skops", spooled(b"bytes"))
    missing = stored.uri.replace(stored.sha256, "0" * 64)

    assert not await store.exists(missing)
    with pytest.raises(NotFound):
        await store.get(missing)
    with pytest.raises(NotFound):
        await store.sha256_of(missing, max_bytes=10)


async def test_a_uri_outside_the_store_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"not an artifact")
    for uri in (outside.as_uri(), "s3://another-bucket/models/x", "https://example.invalid/x"):
        assert not store.owns(uri)
        assert not await store.exists(uri)
        with pytest.raises(NotFound):
            await store.get(uri)


async def test_a_local_store_works_in_a_directory_whose_name_needs_quoting(tmp_path: Path) -> None:
    # Home directories such as "/Users/Ana María" end up percent-encoded in file:// URIs.
    store = artifact_store((tmp_path / "Ana María's artifacts").as_uri(), FleetSettings())
    stored = await store.put_content_addressed("models/m", "model file.skops", spooled(b"bytes"))
    assert await store.exists(stored.uri)
    assert await store.get(stored.uri) == b"bytes"
    on_disk = tmp_path / "Ana María's artifacts" / "models" / "m" / stored.sha256 / "model file.skops"
    assert on_disk.read_bytes() == b"bytes"


def test_a_spooled_upload_refuses_bytes_past_its_limit() -> None:
    upload = SpooledUpload(10)
    upload.write(b"x" * 10)
    assert upload.size == 10
    with pytest.raises(PayloadTooLarge) as refused:
        upload.write(b"y")
    assert refused.value.field == "artifact"
    assert upload.file.closed  # the spooled bytes are released at once


async def test_concurrent_uploads_of_the_same_bytes_all_land_on_one_uri(store: ArtifactStore) -> None:
    stored = await asyncio.gather(
        *(store.put_content_addressed("models/churn", "model.skops", spooled(DATA)) for _ in range(8))
    )
    assert len({s.uri for s in stored}) == 1
    assert await store.get(stored[0].uri) == DATA
