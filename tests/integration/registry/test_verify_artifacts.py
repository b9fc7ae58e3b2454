"""``python -m fleet_registry verify`` after a restore: every artifact the database points at must be
there with its registered size and SHA-256; a replaced object or a bucket that was not restored is
named, version by version, and the exit code says so."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from fleet_core.artifacts import artifact_store, bytes_io
from fleet_registry.settings import RegistrySettings
from fleet_registry.verify import verify_artifacts
from support.registry import running_registry, skops_model, upload_version


def settings_env(settings: RegistrySettings) -> dict[str, str]:
    env = {
        "FLEET_DATABASE_URL": settings.resolved_database_url("registry"),
        "FLEET_ARTIFACT_URI": settings.resolved_artifact_uri(),
        "FLEET_HOME": str(settings.home),
    }
    if settings.s3_endpoint:
        env |= {
            "FLEET_S3_ENDPOINT": settings.s3_endpoint,
            "FLEET_S3_ACCESS_KEY": settings.s3_access_key.get_secret_value()
            if settings.s3_access_key
            else "",
            "FLEET_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value()
            if settings.s3_secret_key
            else "",
            "FLEET_S3_SECURE": str(settings.s3_secure).lower(),
        }
    return env


async def test_verify_names_replaced_and_missing_artifacts(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        first = await upload_version(h, "churn", admin, artifact=skops_model(1))
        second = await upload_version(h, "churn", admin, artifact=skops_model(2))
        assert (first.status_code, second.status_code) == (201, 201), first.text + second.text
        await h.client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
        dataset = await h.client.post(
            "/v1/datasets/events/versions",
            data={"metadata": '{"row_count": 2, "format": "csv", "schema": {"x": "int"}}'},
            files={"file": ("events.csv", b"x\n1\n2\n")},
            headers=admin,
        )
        assert dataset.status_code == 201, dataset.text
        settings = h.settings

    report = await verify_artifacts(settings)
    assert (report.ok, report.model_versions, report.dataset_versions) == (True, 2, 1)

    # v1's object is overwritten in place (a bad restore, a hand edit): the hash gives it away.
    store = artifact_store(settings.resolved_artifact_uri(), settings)
    uri = first.json()["artifact_uri"]
    key = uri.removeprefix(store.base_uri).lstrip("/")
    tampered = skops_model(3)
    await store.put(key, bytes_io(tampered), len(tampered))
    # The dataset file too, with the same number of bytes: only its hash tells.
    data_uri = dataset.json()["uri"]
    await store.put(data_uri.removeprefix(store.base_uri).lstrip("/"), bytes_io(b"x\n1\n3\n"), 6)
    report = await verify_artifacts(settings)
    assert [(p.kind, p.name, p.version) for p in report.problems] == [
        ("model", "churn", 1),
        ("dataset", "events", 1),
    ]
    assert all("registered as" in p.reason for p in report.problems)
    assert report.problems[1].reason.startswith("sha256")

    # The database restored, the bucket not: every version is missing.
    base = settings.resolved_artifact_uri()
    elsewhere = "s3://not-restored/artifacts" if base.startswith("s3://") else f"{base}-not-restored"
    empty = settings.model_copy(update={"artifact_uri": elsewhere})
    report = await verify_artifacts(empty)
    assert [(p.version, p.reason.split(":")[0]) for p in report.problems] == [
        (1, "missing"),
        (2, "missing"),
        (1, "missing"),
    ]

    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fleet_registry", "verify", "--json"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["ok"] is False
    assert [(p["name"], p["version"]) for p in printed["problems"]] == [("churn", 1), ("events", 1)]
