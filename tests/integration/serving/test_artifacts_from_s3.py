"""Runtimes load artifacts from an S3 API (moto) the same way as from local files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from fleet_core.artifacts import S3ArtifactStore, bytes_io
from fleet_core.settings import FleetSettings
from fleet_serving import ArtifactIntegrityError, aload_model
from support.serving import logistic_model


async def test_sklearn_model_loads_from_s3_and_a_tampered_object_is_refused(
    s3_server: dict[str, str], tmp_path: Path
) -> None:
    settings = FleetSettings(
        s3_endpoint=s3_server["endpoint"],
        s3_access_key=SecretStr(s3_server["access_key"]),
        s3_secret_key=SecretStr(s3_server["secret_key"]),
        s3_region=s3_server["region"],
    )
    built = logistic_model(tmp_path)
    data = await asyncio.to_thread(Path(built.spec.artifact_uri.removeprefix("file://")).read_bytes)
    store = S3ArtifactStore(
        "s3://fleet-serving-test/artifacts",
        endpoint=s3_server["endpoint"],
        access_key=s3_server["access_key"],
        secret_key=s3_server["secret_key"],
        region=s3_server["region"],
    )
    uri = await store.put(f"models/{built.spec.sha256}/model.skops", bytes_io(data), len(data))
    spec = built.spec.model_copy(update={"artifact_uri": uri})
    runtime = await aload_model(spec, settings)
    assert runtime.predict(built.rows(5)) == built.expected(5)

    tampered = await store.put("models/other/model.skops", bytes_io(data + b"x"), len(data) + 1)
    with pytest.raises(ArtifactIntegrityError, match="fleet-serving-test"):
        await aload_model(spec.model_copy(update={"artifact_uri": tampered}), settings)
