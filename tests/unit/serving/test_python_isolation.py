"""Publisher code (``python`` flavor) runs apart: only in its own deployment, never in the shared
pool, with no object-store credentials in its environment; the deployer fetches and verifies the
archive and hands it over, and the replica verifies it again before loading."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from fleet_core.schemas import ResourceQuota
from fleet_serving.deployments import DedicatedModel, dedicated_application, require_shareable
from fleet_serving.errors import ArtifactIntegrityError, UntrustedArtifactError
from fleet_serving.loading import fetch_for_replica
from support.serving import logistic_model, python_model

DEPLOYER_ENV = {
    "FLEET_HOME": "/var/lib/fleet",
    "FLEET_S3_ENDPOINT": "http://minio:9000",
    "FLEET_S3_ACCESS_KEY": "fleet",
    "FLEET_S3_SECRET_KEY": "fleet-secret-key",
    "FLEET_S3_REGION": "eu-west-1",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "FLEET_SERVING_TRUSTED_TYPES": "[]",
}
SECRETS = {"fleet", "fleet-secret-key", "aws-secret"}


def artifact_path(uri: str) -> Path:
    return Path(url2pathname(urlparse(uri).path))


def test_a_python_deployment_gets_no_store_credentials_and_its_archive_handed_over(tmp_path: Path) -> None:
    spec = python_model(tmp_path)
    archive = artifact_path(spec.artifact_uri).read_bytes()
    app = dedicated_application(spec, ResourceQuota(), idle_s=60, env=DEPLOYER_ENV, artifact=archive)
    deployment = app._bound_deployment
    env = deployment.ray_actor_options["runtime_env"]["env_vars"]
    assert not SECRETS & set(env.values()), env
    assert not any(v for k, v in env.items() if k.startswith(("FLEET_S3_", "AWS_"))), env
    # Ray workers inherit their node's environment; runtime_env blanks what it cannot remove.
    assert env["AWS_ACCESS_KEY_ID"] == env["FLEET_S3_SECRET_KEY"] == ""
    assert env["FLEET_HOME"] == "/var/lib/fleet"
    assert deployment.init_args[1] == archive


def test_other_flavors_keep_the_store_settings_and_fetch_themselves(tmp_path: Path) -> None:
    spec = logistic_model(tmp_path).spec
    app = dedicated_application(spec, ResourceQuota(), idle_s=60, env=DEPLOYER_ENV)
    env = app._bound_deployment.ray_actor_options["runtime_env"]["env_vars"]
    assert env["FLEET_S3_SECRET_KEY"] == "fleet-secret-key"
    assert app._bound_deployment.init_args[1] is None


def test_a_python_deployment_without_its_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="archive"):
        dedicated_application(python_model(tmp_path), ResourceQuota(), idle_s=60, env=DEPLOYER_ENV)


def test_the_pool_never_loads_a_python_version(tmp_path: Path) -> None:
    with pytest.raises(UntrustedArtifactError, match="own deployment"):
        require_shareable(python_model(tmp_path))


def test_the_replica_loads_the_handed_archive_without_any_store_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path / "replica"))
    spec = python_model(tmp_path / "store")
    archive = fetch_for_replica(spec, DEPLOYER_ENV | {"FLEET_HOME": str(tmp_path)})
    artifact_path(spec.artifact_uri).unlink()  # the replica could not fetch it even if it tried

    replica = DedicatedModel.func_or_class(spec.model_dump(mode="json"), archive)
    assert replica.runtime.predict([{"amount": 5.0}, {"amount": 500.0}]) == ["low", "high"]

    with pytest.raises(ArtifactIntegrityError):
        DedicatedModel.func_or_class(spec.model_dump(mode="json"), archive + b"tampered")
    with pytest.raises(UntrustedArtifactError, match="handed its archive"):
        DedicatedModel.func_or_class(spec.model_dump(mode="json"))


def test_the_deployer_refuses_to_hand_over_an_archive_that_does_not_match_its_sha256(tmp_path: Path) -> None:
    spec = python_model(tmp_path)
    artifact_path(spec.artifact_uri).write_bytes(b"swapped in the store")
    with pytest.raises(ArtifactIntegrityError):
        fetch_for_replica(spec, {"FLEET_HOME": str(tmp_path)})
