"""The ``fleet-runtime`` application a RayService declares: it starts on a real cluster beside the
imperatively deployed model applications and reports the image's Ray, Python and runtimes."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform

import pytest

from fleet_serving.control import ServingControl
from fleet_serving.runtime_info import APP_NAME, FLAVOR_LIBRARIES

pytestmark = pytest.mark.slow


async def test_the_declared_runtime_app_reports_what_the_image_carries(ray_cluster: str) -> None:
    from ray import serve

    control = ServingControl()
    control.connect(ray_cluster)
    # Serve runs without an HTTP proxy: nothing of it may take the gateway's port (8000) on the head.
    assert serve.status().proxies == {}
    # What `serveConfigV2` does, through the same import path the RayService names.
    module, _, attribute = "fleet_serving.runtime_info:app".partition(":")
    app = getattr(importlib.import_module(module), attribute)
    serve.run(app, name=APP_NAME, route_prefix=None, blocking=False)
    try:
        control.wait_running(APP_NAME, timeout_s=120)
        info = await serve.get_app_handle(APP_NAME).remote()
        assert info["ray"] == importlib.metadata.version("ray")
        assert info["python"] == platform.python_version()
        assert set(info["flavors"]) == set(FLAVOR_LIBRARIES)
        assert info["flavors"]["onnx"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
        assert info["flavors"]["sklearn"]["scikit-learn"] == importlib.metadata.version("scikit-learn")
    finally:
        control.remove(APP_NAME)
