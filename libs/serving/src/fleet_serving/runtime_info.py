"""``fleet-runtime``: the one Serve application a Ray cluster declares for itself.

ModelFleet's deployer deploys model applications imperatively, from its driver. A KubeRay
``RayService`` must still declare at least one application in ``serveConfigV2``, and KubeRay keeps
the cluster "not ready" until every declared application is RUNNING. Declaring this one makes that
readiness mean something: its replica imports every model runtime the image carries, so an image
missing a runtime or built against another Ray fails at cluster start, not at a model's first
deployment. It answers with what the image carries, which is how an operator checks that drivers
and cluster run the same Ray and Python (``serve.get_app_handle("fleet-runtime").remote()``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from ray import serve

APP_NAME = "fleet-runtime"
# The libraries each model flavor runs on; a missing one fails the replica's constructor.
FLAVOR_LIBRARIES = {"sklearn": ("scikit-learn", "skops"), "onnx": ("onnxruntime",), "python": ()}


def describe_runtime() -> dict[str, Any]:
    """Versions of Python, Ray and each flavor's libraries in this process's environment."""
    import fleet_serving.runtimes  # noqa: F401  (imports every runtime, as a replica would)

    return {
        "python": platform.python_version(),
        "ray": importlib.metadata.version("ray"),
        "fleet_serving": importlib.metadata.version("fleet-serving"),
        "flavors": {
            flavor: {name: importlib.metadata.version(name) for name in libraries}
            for flavor, libraries in FLAVOR_LIBRARIES.items()
        },
        "image": os.environ.get("FLEET_IMAGE", ""),
    }


# A sliver of CPU, not zero: a zero-CPU replica may land on a driver's zero-CPU node (the gateway's
# pod), where Serve would then start an HTTP proxy.
@serve.deployment(name="RuntimeInfo", num_replicas=1, ray_actor_options={"num_cpus": 0.01})
class RuntimeInfo:
    def __init__(self) -> None:
        self.info = describe_runtime()

    async def __call__(self, *_: Any) -> dict[str, Any]:
        return self.info


app = RuntimeInfo.bind()
