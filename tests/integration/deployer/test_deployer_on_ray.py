"""A deploy through the deployer really creates a Ray Serve application with the version's quota."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from fleet_core.serving import dedicated_app_name
from support.deployer import running_deployer
from support.registry import SIGNATURE, skops_model
from support.registry_double import confirming

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_dedicated_deploy_creates_a_running_serve_app(ray_cluster: str, tmp_path: Path) -> None:
    model = f"deployer-it-{uuid.uuid4().hex[:8]}"
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(skops_model())
    app = dedicated_app_name(model, 1)
    async with running_deployer(tmp_path, ray_address=ray_cluster) as d:
        confirming(d)
        try:
            await d.register(
                model,
                1,
                artifact_uri=artifact.as_uri(),
                sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
                size_bytes=artifact.stat().st_size,
                signature=SIGNATURE,
                deploy_policy="direct",
                quota={"num_cpus": 0.25, "min_replicas": 1, "max_replicas": 1},
            )
            view = (await d.client.get(f"/v1/deployments/{model}", headers=d.auth())).json()
            assert view["deployments"][0]["state"] == "ready", view
            assert view["route"]["arms"][0]["deployment"] == app
            ray_view = view["deployments"][0]["ray"]
            assert ray_view["status"] == "RUNNING"
            assert ray_view["replicas"] == 1
            assert (ray_view["autoscaling"]["min_replicas"], ray_view["autoscaling"]["max_replicas"]) == (
                1,
                1,
            )
            assert ray_view["actor_options"]["num_cpus"] == pytest.approx(0.25)
            assert app in await d.controller.serving.list_apps()
        finally:
            await d.controller.serving.remove(app)
        assert app not in await d.controller.serving.list_apps()
