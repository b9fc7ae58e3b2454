"""With `artifact_uri=s3://bucket/prefix` the registry keeps artifacts in an S3 API server (here
moto, through the minio SDK) and behaves as it does on local files."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from minio import Minio

from support.registry import RegistryHarness, running_registry, skops_model, upload_version, version_metadata

pytestmark = pytest.mark.integration

BUCKET = "fleet-artifacts"


@pytest.fixture
async def registry(s3_server: dict[str, str], tmp_path: Path) -> AsyncIterator[RegistryHarness]:
    async with running_registry(
        tmp_path,
        artifact_uri=f"s3://{BUCKET}/registry",
        s3_endpoint=s3_server["endpoint"],
        s3_access_key=s3_server["access_key"],
        s3_secret_key=s3_server["secret_key"],
        s3_secure=False,
    ) as h:
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=h.auth())
        yield h


@pytest.fixture
def s3(s3_server: dict[str, str]) -> Minio:
    """A plain S3 client, as a training job outside the registry would use."""
    client = Minio(
        s3_server["endpoint"].removeprefix("http://"),
        access_key=s3_server["access_key"],
        secret_key=s3_server["secret_key"],
        secure=False,
    )
    if not client.bucket_exists(bucket_name=BUCKET):
        client.make_bucket(bucket_name=BUCKET)
    return client


async def test_an_uploaded_artifact_lands_in_the_bucket_and_downloads_intact(
    registry: RegistryHarness, s3: Minio
) -> None:
    artifact = skops_model()
    r = await upload_version(registry, "churn", registry.auth(), artifact=artifact)
    assert r.status_code == 201, r.text
    sha = hashlib.sha256(artifact).hexdigest()
    assert r.json()["artifact_uri"] == f"s3://{BUCKET}/registry/models/churn/{sha}/model.skops"
    stored = s3.get_object(bucket_name=BUCKET, object_name=f"registry/models/churn/{sha}/model.skops")
    try:
        assert stored.read() == artifact
    finally:
        stored.close()
        stored.release_conn()
    download = await registry.client.get("/v1/models/churn/versions/1/artifact", headers=registry.auth())
    assert download.content == artifact and download.headers["x-fleet-sha256"] == sha


async def test_an_object_already_in_the_bucket_registers_from_its_uri(
    registry: RegistryHarness, s3: Minio
) -> None:
    artifact = skops_model(4)
    s3.put_object(
        bucket_name=BUCKET,
        object_name="registry/jobs/run-9/model.skops",
        data=io.BytesIO(artifact),
        length=len(artifact),
    )
    uri = f"s3://{BUCKET}/registry/jobs/run-9/model.skops"
    body = {**version_metadata(), "artifact_uri": uri, "sha256": hashlib.sha256(artifact).hexdigest()}
    admin = registry.auth()

    wrong = await registry.client.post(
        "/v1/models/churn/versions/from-uri", json={**body, "sha256": "0" * 64}, headers=admin
    )
    assert (wrong.status_code, wrong.json()["field"]) == (422, "sha256")
    for elsewhere in (f"s3://{BUCKET}/registry/jobs/run-9/missing.skops", "s3://another-bucket/model.skops"):
        r = await registry.client.post(
            "/v1/models/churn/versions/from-uri", json={**body, "artifact_uri": elsewhere}, headers=admin
        )
        assert (r.status_code, r.json()["field"]) == (422, "artifact_uri"), elsewhere

    ok = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=admin)
    assert ok.status_code == 201, ok.text
    assert (ok.json()["version"], ok.json()["artifact_uri"]) == (1, uri)
    download = await registry.client.get("/v1/models/churn/versions/1/artifact", headers=admin)
    assert download.content == artifact


async def test_dataset_files_are_kept_in_the_bucket_too(registry: RegistryHarness) -> None:
    admin = registry.auth()
    await registry.client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
    data = b"x0,x1\n1,2\n"
    r = await registry.client.post(
        "/v1/datasets/events/versions",
        data={"metadata": '{"row_count": 1, "format": "csv"}'},
        files={"file": ("events.csv", data)},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["uri"].startswith(f"s3://{BUCKET}/registry/datasets/events/")
    content = await registry.client.get("/v1/datasets/events/versions/1/content", headers=admin)
    assert content.content == data


async def test_every_object_is_written_with_server_side_encryption(
    s3_server: dict[str, str], s3: Minio, tmp_path: Path
) -> None:
    async with running_registry(
        tmp_path,
        artifact_uri=f"s3://{BUCKET}/encrypted",
        s3_endpoint=s3_server["endpoint"],
        s3_access_key=s3_server["access_key"],
        s3_secret_key=s3_server["secret_key"],
        s3_secure=False,
        s3_sse="s3",
    ) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        version = (await upload_version(h, "churn", admin)).json()
        await h.client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
        dataset = (
            await h.client.post(
                "/v1/datasets/events/versions",
                data={"metadata": '{"row_count": 1, "format": "csv"}'},
                files={"file": ("events.csv", b"x0\n1\n")},
                headers=admin,
            )
        ).json()
    for uri in (version["artifact_uri"], dataset["uri"]):
        stat = s3.stat_object(bucket_name=BUCKET, object_name=uri.removeprefix(f"s3://{BUCKET}/"))
        assert stat.metadata.get("x-amz-server-side-encryption") == "AES256", (uri, dict(stat.metadata))


def test_production_encrypts_by_default_and_kms_needs_a_key() -> None:
    from fleet_registry.settings import RegistrySettings

    secret = "x" * 40
    assert RegistrySettings(mode="production", jwt_secret=secret).resolved_s3_sse == "s3"
    assert RegistrySettings().resolved_s3_sse == "none"
    with pytest.raises(ValueError, match="FLEET_S3_SSE_KMS_KEY_ID"):
        RegistrySettings(s3_sse="kms")
