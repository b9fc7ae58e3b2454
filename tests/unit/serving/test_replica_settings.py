"""A serving replica reads its settings from the Ray image's environment plus what the deployer passes
in ``runtime_env.env_vars``; nothing else reaches a Ray worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet_deployer.settings import DeployerSettings
from fleet_serving.settings import ServingSettings
from support.deploy import dockerfile, image_env

SECRET = "a-production-secret-that-is-long-enough-0123456789"


def _only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``env`` the process's whole FLEET_* environment."""
    for name in list(os.environ):
        if name.startswith(("FLEET_", "AWS_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_a_replica_starts_in_the_production_ray_image_without_a_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deployer = DeployerSettings(
        mode="production",
        home=tmp_path,
        jwt_secret=SECRET,
        s3_endpoint="http://minio:9000",
        s3_access_key="fleet",
        s3_secret_key="fleet-secret",
    )
    env = image_env(dockerfile("ray")) | deployer.replica_env()
    assert env["FLEET_MODE"] == "production"
    assert not any(name.startswith("FLEET_JWT") for name in env)  # the replica env carries no secret
    _only(env, monkeypatch)

    settings = ServingSettings()

    assert settings.mode == "production"
    assert settings.home == tmp_path
    assert settings.s3_endpoint == "http://minio:9000"
    assert not settings.python_allowed  # production's default: no custom code
    with pytest.raises(RuntimeError, match="replica"):
        settings.token_authority()  # a replica never signs or verifies tokens


def test_services_still_refuse_a_placeholder_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    _only({"FLEET_MODE": "production"}, monkeypatch)
    with pytest.raises(ValueError, match="FLEET_JWT_SECRET"):
        DeployerSettings()
