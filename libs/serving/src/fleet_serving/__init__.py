"""ModelFleet serving engine: model runtimes and the Ray Serve deployments that host them.

Public API: load a version (``load_model``/``aload_model``), build Serve apps
(``pool_application``/``dedicated_application``) and run them (``ServingControl``).
"""

from fleet_serving.control import (
    ActorOptionsView,
    AppSummary,
    AppView,
    AutoscalingView,
    DeploymentView,
    ReplicaView,
    ServingControl,
)
from fleet_serving.deployments import (
    SPOT_RESOURCE,
    DedicatedModel,
    DedicatedReplicaStats,
    ModelPool,
    PoolReplicaStats,
    dedicated_application,
    pool_application,
    quota_actor_options,
    quota_autoscaling,
    replica_env,
)
from fleet_serving.errors import (
    ArtifactIntegrityError,
    ModelLoadError,
    ModelTooLargeError,
    PredictionError,
    ServingControlError,
    UnknownAppError,
    UnknownModelError,
    UntrustedArtifactError,
)
from fleet_serving.loading import aload_model, fetch_artifact, load_model, verify_artifact
from fleet_serving.runtimes import OnnxRuntime, PythonRuntime, Runtime, SklearnRuntime
from fleet_serving.settings import ServingSettings

__all__ = [
    "SPOT_RESOURCE",
    "ActorOptionsView",
    "AppSummary",
    "AppView",
    "ArtifactIntegrityError",
    "AutoscalingView",
    "DedicatedModel",
    "DedicatedReplicaStats",
    "DeploymentView",
    "ModelLoadError",
    "ModelPool",
    "ModelTooLargeError",
    "OnnxRuntime",
    "PoolReplicaStats",
    "PredictionError",
    "PythonRuntime",
    "ReplicaView",
    "Runtime",
    "ServingControl",
    "ServingControlError",
    "ServingSettings",
    "SklearnRuntime",
    "UnknownAppError",
    "UnknownModelError",
    "UntrustedArtifactError",
    "aload_model",
    "dedicated_application",
    "fetch_artifact",
    "load_model",
    "pool_application",
    "quota_actor_options",
    "quota_autoscaling",
    "replica_env",
    "verify_artifact",
]
