"""Registering versions: by upload or from an artifact already in the store, numbered in order,
verified by sha256, checked for a safe format and a consistent example, and frozen once
registered."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fleet_core.auth import Role
from support.registry import RegistryHarness, skops_model, upload_version, version_metadata


@pytest.fixture
async def registry(registry: RegistryHarness) -> RegistryHarness:
    """The registry with one empty model, `churn`, of team `growth`."""
    r = await registry.client.post(
        "/v1/models", json={"name": "churn", "team": "growth"}, headers=registry.auth()
    )
    assert r.status_code == 201
    return registry


def field_of(response: Any) -> tuple[int, str | None]:
    return response.status_code, response.json().get("field")


async def test_uploading_an_artifact_registers_version_1_with_its_sha256(registry: RegistryHarness) -> None:
    artifact = skops_model()
    ana = registry.auth(Role.SCIENTIST, ["growth"], subject="ana")
    r = await upload_version(registry, "churn", ana, artifact=artifact, description="first cut")
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["model"], v["version"], v["team"], v["flavor"]) == ("churn", 1, "growth", "sklearn")
    assert v["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert v["size_bytes"] == len(artifact)
    assert v["signature"]["inputs"][0]["name"] == "x0" and v["metrics"] == {"accuracy": 0.9}
    assert (v["created_by"], v["description"], v["origin"]) == ("ana", "first cut", "manual")
    assert v["event_id"]  # model.registered is staged in the outbox with the version
    # The bytes sit content-addressed in the artifact store under FLEET_HOME.
    stored = Path(v["artifact_uri"].removeprefix("file://"))
    assert stored.is_relative_to(registry.settings.home / "artifacts") and v["sha256"] in stored.parts
    assert await asyncio.to_thread(stored.read_bytes) == artifact


async def test_version_numbers_increment_and_list_newest_first(registry: RegistryHarness) -> None:
    admin = registry.auth()
    numbers = [
        (await upload_version(registry, "churn", admin, artifact=skops_model(i))).json()["version"]
        for i in range(3)
    ]
    assert numbers == [1, 2, 3]
    listing = (await registry.client.get("/v1/models/churn/versions", headers=admin)).json()
    assert listing["total"] == 3 and [v["version"] for v in listing["items"]] == [3, 2, 1]
    assert (await registry.client.get("/v1/models/churn", headers=admin)).json()["latest_version"] == 3


async def test_an_explicit_version_number_is_honoured_and_never_reused(registry: RegistryHarness) -> None:
    admin = registry.auth()
    assert (await upload_version(registry, "churn", admin, version=5)).json()["version"] == 5
    assert (await upload_version(registry, "churn", admin, artifact=skops_model(1))).json()["version"] == 6
    again = await upload_version(registry, "churn", admin, artifact=skops_model(2), version=5)
    assert field_of(again) == (409, "version")
    assert "already has version 5" in again.json()["detail"]


async def test_an_upload_must_hash_to_the_sha256_it_claims(registry: RegistryHarness) -> None:
    artifact = skops_model()
    admin = registry.auth()
    wrong = await upload_version(registry, "churn", admin, artifact=artifact, sha256="0" * 64)
    assert field_of(wrong) == (422, "sha256")
    right = await upload_version(
        registry, "churn", admin, artifact=artifact, sha256=hashlib.sha256(artifact).hexdigest()
    )
    assert right.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "f" * 64),
        ("flavor", "onnx"),
        ("metrics", {"accuracy": 1.0}),
        ("artifact_uri", "file:///elsewhere/model.skops"),
        ("signature", {"inputs": [], "outputs": []}),
        ("version", 9),
    ],
)
async def test_a_registered_version_is_immutable(registry: RegistryHarness, field: str, value: Any) -> None:
    admin = registry.auth()
    before = (await upload_version(registry, "churn", admin)).json()
    r = await registry.client.patch("/v1/models/churn/versions/1", json={field: value}, headers=admin)
    assert field_of(r) == (422, field)
    assert "immutable" in r.json()["detail"]
    assert (await registry.client.get("/v1/models/churn/versions/1", headers=admin)).json() == before


async def test_a_versions_description_and_tags_can_change(registry: RegistryHarness) -> None:
    admin = registry.auth()
    before = (await upload_version(registry, "churn", admin)).json()
    r = await registry.client.patch(
        "/v1/models/churn/versions/1", json={"description": "reviewed", "tags": ["approved"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    after = r.json()
    assert (after["description"], after["tags"]) == ("reviewed", ["approved"])
    assert {k: v for k, v in after.items() if k not in {"description", "tags"}} == {
        k: v for k, v in before.items() if k not in {"description", "tags"}
    }


async def test_the_downloaded_artifact_is_the_uploaded_bytes(registry: RegistryHarness) -> None:
    artifact = skops_model(7)
    admin = registry.auth()
    v = (await upload_version(registry, "churn", admin, artifact=artifact)).json()
    download = await registry.client.get(
        "/v1/models/churn/versions/1/artifact", headers=registry.auth(Role.VIEWER, ["growth"])
    )
    assert download.status_code == 200
    assert download.content == artifact
    assert download.headers["x-fleet-sha256"] == v["sha256"] == hashlib.sha256(download.content).hexdigest()
    assert 'filename="churn-1-model.skops"' in download.headers["content-disposition"]


def put_in_artifact_store(h: RegistryHarness, relative: str, data: bytes) -> str:
    """Place bytes in the registry's artifact directory the way an upload job would."""
    path = h.settings.home / "artifacts" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


async def test_an_artifact_already_in_the_store_registers_by_uri_and_sha256(
    registry: RegistryHarness,
) -> None:
    artifact = skops_model(3)
    uri = put_in_artifact_store(registry, "jobs/run-17/model.skops", artifact)
    body = {**version_metadata(), "artifact_uri": uri, "sha256": hashlib.sha256(artifact).hexdigest()}
    r = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=registry.auth())
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["artifact_uri"], r.json()["size_bytes"]) == (1, uri, len(artifact))
    download = await registry.client.get("/v1/models/churn/versions/1/artifact", headers=registry.auth())
    assert download.content == artifact


async def test_a_uri_registration_with_the_wrong_sha256_is_refused(registry: RegistryHarness) -> None:
    artifact = skops_model(3)
    uri = put_in_artifact_store(registry, "jobs/run-17/model.skops", artifact)
    body = {**version_metadata(), "artifact_uri": uri, "sha256": hashlib.sha256(b"other bytes").hexdigest()}
    r = await registry.client.post("/v1/models/churn/versions/from-uri", json=body, headers=registry.auth())
    assert field_of(r) == (422, "sha256")
    # The object's real hash is not echoed: that would make from-uri a hash oracle for any URI.
    assert hashlib.sha256(artifact).hexdigest() not in r.text
    assert (await registry.client.get("/v1/models/churn/versions", headers=registry.auth())).json()[
        "total"
    ] == 0


async def test_a_uri_registration_must_point_into_the_artifact_store(
    registry: RegistryHarness, tmp_path: Path
) -> None:
    outside = tmp_path / "not-the-store" / "model.skops"
    outside.parent.mkdir()
    outside.write_bytes(skops_model())
    missing = (registry.settings.home / "artifacts" / "nothing-here.skops").as_uri()
    for uri in (outside.as_uri(), missing, "s3://some-bucket/model.skops"):
        body = {
            **version_metadata(),
            "artifact_uri": uri,
            "sha256": hashlib.sha256(skops_model()).hexdigest(),
        }
        r = await registry.client.post(
            "/v1/models/churn/versions/from-uri", json=body, headers=registry.auth()
        )
        assert field_of(r) == (422, "artifact_uri"), uri


async def test_a_raw_pickle_is_not_accepted_as_an_sklearn_artifact(registry: RegistryHarness) -> None:
    r = await upload_version(registry, "churn", registry.auth(), artifact=pickle.dumps({"weights": [1, 2]}))
    assert field_of(r) == (422, "artifact")
    assert "skops" in r.json()["detail"]


async def test_an_example_input_must_fit_the_signature(registry: RegistryHarness) -> None:
    admin = registry.auth()
    out_of_range = await upload_version(registry, "churn", admin, example_input=[{"x0": 99.0, "x1": 0.0}])
    assert field_of(out_of_range) == (422, "example_input.x0")
    assert "above the maximum 10" in out_of_range.json()["detail"]
    wrong_type = await upload_version(registry, "churn", admin, example_input=[{"x0": 1.0, "x1": "high"}])
    assert field_of(wrong_type) == (422, "example_input.x1")
    unknown = await upload_version(registry, "churn", admin, example_input=[{"x0": 1.0, "x1": 2.0, "x9": 0}])
    assert field_of(unknown) == (422, "example_input.x9")
    second_row = await upload_version(
        registry, "churn", admin, example_input=[{"x0": 1.0, "x1": 2.0}, {"x1": 2.0}]
    )
    assert field_of(second_row) == (422, "example_input[1].x0")
    fits = await upload_version(registry, "churn", admin, example_input=[{"x0": 1.5, "x1": -3.0}])
    assert fits.status_code == 201 and fits.json()["example_input"] == [{"x0": 1.5, "x1": -3.0}]


async def test_a_retrained_version_must_name_an_existing_parent(registry: RegistryHarness) -> None:
    admin = registry.auth()
    orphan = await upload_version(registry, "churn", admin, origin="retrain")
    assert field_of(orphan) == (422, "parent_version")
    unknown_parent = await upload_version(registry, "churn", admin, origin="retrain", parent_version=4)
    assert field_of(unknown_parent) == (404, "parent_version")
    await upload_version(registry, "churn", admin)
    child = await upload_version(
        registry, "churn", admin, artifact=skops_model(1), origin="retrain", parent_version=1
    )
    assert child.status_code == 201 and child.json()["parent_version"] == 1


async def test_only_deployers_register_custom_python_code(registry: RegistryHarness) -> None:
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as zf:
        zf.writestr(
            "model.py", "class Model:\n    def predict(self, rows):\n        return [0 for _ in rows]\n"
        )

    async def register(headers: dict[str, str]) -> Any:
        return await registry.client.post(
            "/v1/models/churn/versions",
            data={"metadata": json.dumps(version_metadata(flavor="python"))},
            files={"artifact": ("model.zip", package.getvalue())},
            headers=headers,
        )

    assert (await register(registry.auth(Role.SCIENTIST, ["growth"]))).status_code == 403
    accepted = await register(registry.auth(Role.DEPLOYER, ["growth"]))
    assert accepted.status_code == 201 and accepted.json()["flavor"] == "python"
