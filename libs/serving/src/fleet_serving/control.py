"""``ServingControl``: the synchronous facade the deployer uses to run apps on Ray Serve.

Every method blocks (call it from a thread in async code). Apps are applied with
``serve.run_many`` without Serve's own unbounded wait, then polled until RUNNING within a
deadline; a failed deploy raises ``ServingControlError`` carrying Serve's message.
``describe`` reports what Serve holds for an app *and* what Ray itself reserved for each replica
actor, so a quota can be shown to be applied, not just requested.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from fleet_core.schemas import ResourceQuota
from fleet_core.serving import (
    POOL_APP,
    POOL_DEPLOYMENT,
    SERVE_NAMESPACE,
    ModelSpec,
    Placement,
    PoolConfig,
    PoolSizing,
    dedicated_app_name,
)
from fleet_serving import catalog
from fleet_serving.deployments import (
    ISOLATED_FLAVORS,
    SPOT_RESOURCE,
    PoolReplicaStats,
    dedicated_application,
    pool_application,
)
from fleet_serving.errors import ServingControlError, UnknownAppError
from fleet_serving.loading import fetch_for_replica

log = logging.getLogger(__name__)

AppStatus = Literal["NOT_STARTED", "DEPLOYING", "DEPLOY_FAILED", "RUNNING", "UNHEALTHY", "DELETING"]


def _enum_name(value: Any) -> str:
    """Serve's status enums as their plain names (``RUNNING``, not ``ApplicationStatus.RUNNING``)."""
    return str(getattr(value, "value", value))


class AutoscalingView(BaseModel):
    """The autoscaling bounds Serve holds for a deployment."""

    min_replicas: int
    max_replicas: int
    initial_replicas: int | None = None
    target_ongoing_requests: float | None = None
    downscale_to_zero_delay_s: float | None = None


class ActorOptionsView(BaseModel):
    """The ``ray_actor_options`` Serve holds for a deployment (env var values withheld: secrets)."""

    num_cpus: float | None = None
    memory: int | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    env_var_names: list[str] = Field(default_factory=list)


class ReplicaView(BaseModel):
    """One replica, with the resources Ray reserved for its actor."""

    replica_id: str
    actor_id: str | None
    state: str
    pid: int | None = None
    node_id: str | None = None
    required_resources: dict[str, float] = Field(default_factory=dict)
    """From Ray's actor table (the state API, or the GCS directly when the dashboard is off)."""


class DeploymentView(BaseModel):
    """A deployment of an app as Serve and Ray see it."""

    name: str
    status: str
    message: str
    target_replicas: int | None
    replica_states: dict[str, int]
    replicas: list[ReplicaView]
    autoscaling: AutoscalingView | None
    actor_options: ActorOptionsView


class AppView(BaseModel):
    """``ServingControl.describe``: one application."""

    name: str
    status: AppStatus | str
    message: str
    deployments: dict[str, DeploymentView]
    resources_source: Literal["state_api", "gcs", "none"] = "none"


class AppSummary(BaseModel):
    name: str
    status: AppStatus | str
    message: str


class ServingControl:
    """Apply, describe and remove ModelFleet apps on a Ray cluster's Serve instance."""

    def __init__(self, *, deploy_timeout_s: float = 180.0, poll_interval_s: float = 0.25) -> None:
        self.deploy_timeout_s = deploy_timeout_s
        self.poll_interval_s = poll_interval_s
        self._connected = False
        self._lock = threading.RLock()
        self._state_api: bool | None = None

    # ------------------------------------------------------------------ connection

    def connect(self, address: str) -> None:
        """Join the Ray cluster at ``address`` as a driver and make sure Serve runs (no HTTP proxy)."""
        import ray
        from ray import serve
        from ray._private import auto_init_hook

        with self._lock:
            # A driver of a given cluster must never start a local one: Serve's handle threads call
            # Ray after a disconnect (or the head's death), and Ray would auto-init a new cluster.
            auto_init_hook.enable_auto_connect = False
            ray.init(
                address=address,
                namespace=SERVE_NAMESPACE,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
            serve.start(proxy_location="Disabled")
            self._connected = True

    def disconnect(self) -> None:
        """Leave the cluster (apps keep running: they belong to the cluster, not this driver)."""
        import ray

        with self._lock:
            if ray.is_initialized():
                ray.shutdown()
            self._connected = False

    def _require(self) -> None:
        import ray

        if not (self._connected and ray.is_initialized()):
            raise ServingControlError("not connected to Ray: call ServingControl.connect(address) first")

    # ------------------------------------------------------------------ apply / remove

    def apply_pool(
        self,
        config: PoolConfig,
        sizing: PoolSizing,
        env: Mapping[str, str] | None = None,
        *,
        idle_s: float | None = None,
        app_name: str = POOL_APP,
    ) -> AppView:
        """Deploy or update the shared pool; a change of ``config`` alone reconfigures live replicas.
        The specs go to Ray's KV store first (``fleet_serving.catalog``); Serve holds only their digest."""
        self._require()
        ref, data = catalog.encode(config, app_name)
        with self._lock:  # published and applied in one turn, so applies stay in publish order
            catalog.publish(app_name, ref, data)
            return self._apply(app_name, pool_application(ref, sizing, env, idle_s=idle_s))

    def apply_dedicated(
        self,
        spec: ModelSpec,
        quota: ResourceQuota,
        idle_s: float,
        env: Mapping[str, str] | None = None,
        *,
        app_name: str | None = None,
    ) -> AppView:
        """Deploy or update one version's dedicated app (default name ``dedicated_app_name``)."""
        self._require()
        name = app_name or dedicated_app_name(spec.model, spec.version)
        spot = quota.capacity_class == "spot" and self.cluster_has_spot()
        if quota.capacity_class == "spot" and not spot:
            log.warning("%s: spot capacity requested but the cluster has no %r resource", name, SPOT_RESOURCE)
        # Publisher code gets no store credentials: the archive is fetched and verified here, by
        # the deployer, and handed to the replicas.
        artifact = fetch_for_replica(spec, env or {}) if spec.flavor in ISOLATED_FLAVORS else None
        return self._apply(
            name,
            dedicated_application(spec, quota, idle_s=idle_s, env=env, spot_resource=spot, artifact=artifact),
        )

    def cluster_has_spot(self) -> bool:
        import ray

        return SPOT_RESOURCE in ray.cluster_resources()

    def _apply(self, name: str, app: Any) -> AppView:
        from ray import serve
        from ray.serve.api import RunTarget

        self._require()
        with self._lock:
            serve.run_many(
                [RunTarget(target=app, name=name, route_prefix=None)],
                wait_for_ingress_deployment_creation=False,
                wait_for_applications_running=False,
            )
            return self.wait_running(name)

    def wait_running(self, name: str, timeout_s: float | None = None) -> AppView:
        """Poll until the app is RUNNING; raise with Serve's message if it fails or times out."""
        from ray import serve

        deadline = time.monotonic() + (timeout_s or self.deploy_timeout_s)
        status, message = "NOT_STARTED", ""
        while time.monotonic() < deadline:
            app = serve.status().applications.get(name)
            if app is not None:
                status, message = _enum_name(app.status), app.message
                settled = all(
                    _enum_name(d.status) in {"HEALTHY", "UPSCALING", "DOWNSCALING"}
                    for d in app.deployments.values()
                )
                if status == "RUNNING" and settled:
                    return self.describe(name)
                if status == "DEPLOY_FAILED":
                    raise ServingControlError(f"Ray Serve could not deploy {name!r}: {message}")
            time.sleep(self.poll_interval_s)
        raise ServingControlError(
            f"{name!r} did not become RUNNING within {timeout_s or self.deploy_timeout_s:.0f}s "
            f"(status {status}: {message or 'no message'})"
        )

    def remove(self, app_name: str) -> None:
        """Delete an app and wait for its replicas to stop; removing an absent app is not an error."""
        from ray import serve

        self._require()
        with self._lock:
            if app_name in serve.status().applications:
                serve.delete(app_name, _blocking=True)
            catalog.forget(app_name)

    # ------------------------------------------------------------------ inspection

    def list_apps(self) -> list[AppSummary]:
        from ray import serve

        self._require()
        return [
            AppSummary(name=name, status=_enum_name(app.status), message=app.message)
            for name, app in sorted(serve.status().applications.items())
        ]

    def handle(self, placement: Placement) -> Any:
        """A ``DeploymentHandle`` for a placement (call ``.options(multiplexed_model_id=key)``)."""
        from ray import serve

        self._require()
        return serve.get_deployment_handle(placement.deployment, app_name=placement.app)

    async def smoke_test(
        self, spec: ModelSpec, placement: Placement, rows: list[dict[str, Any]]
    ) -> list[Any]:
        """Predict ``rows`` through the version's deployment, as the gateway does: loads (warms) the
        model and proves it answers. Awaited on the caller's event loop, because with
        ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` a handle's router runs in that loop (a blocking
        ``.result()`` from a worker thread is refused). Raises whatever the replica raised."""
        handle = self.handle(placement).options(multiplexed_model_id=spec.key)
        return list(await handle.predict.remote(rows))

    def pool_stats(self, app_name: str = POOL_APP, timeout_s: float = 10.0) -> list[PoolReplicaStats]:
        """``ModelPool.stats`` of every running replica of the pool, each asked directly.

        A handle call lands on whichever replica the router picks; to see every replica's cache,
        each replica actor is called by its Serve name (``SERVE_REPLICA::app#deployment#id``, in
        the ``serve`` namespace) the way Serve's own router calls it (``handle_request`` with
        pickled ``RequestMetadata``). A replica that does not answer in ``timeout_s`` is left out."""
        import pickle
        import uuid

        import ray
        from ray.serve._private.common import DeploymentID, ReplicaID, RequestMetadata
        from ray.serve._private.constants import SERVE_NAMESPACE as RAY_SERVE_NAMESPACE
        from ray.serve.context import _get_global_client

        self._require()
        details = _get_global_client().get_serve_details()
        app = (details.get("applications") or {}).get(app_name)
        if app is None:
            raise UnknownAppError(f"no Serve application named {app_name!r}", field="app")
        deployment = app["deployments"].get(POOL_DEPLOYMENT) or {}
        refs = []
        for replica in deployment.get("replicas", []):
            if _enum_name(replica.get("state")) != "RUNNING":
                continue
            name = ReplicaID(replica["replica_id"], DeploymentID(POOL_DEPLOYMENT, app_name)).to_full_id_str()
            try:
                actor = ray.get_actor(name, namespace=RAY_SERVE_NAMESPACE)
            except ValueError:  # stopped between the listing and the lookup
                continue
            request_id = uuid.uuid4().hex
            metadata = RequestMetadata(
                request_id=request_id, internal_request_id=request_id, call_method="stats", app_name=app_name
            )
            refs.append((name, actor.handle_request.remote(pickle.dumps(metadata))))
        found: list[PoolReplicaStats] = []
        for name, ref in refs:
            try:
                found.append(ray.get(ref, timeout=timeout_s))
            except Exception as exc:  # one replica dying or slow must not hide the others
                log.warning("pool replica %s did not report its stats: %s", name, exc)
        return sorted(found, key=lambda r: r.replica_id)

    def describe(self, app_name: str) -> AppView:
        """Status, replicas, autoscaling bounds and actor options of an app, with Ray's own view
        of the resources each replica actor holds."""
        from ray.serve.context import _get_global_client

        self._require()
        details = _get_global_client().get_serve_details()
        app = (details.get("applications") or {}).get(app_name)
        if app is None:
            raise UnknownAppError(f"no Serve application named {app_name!r}", field="app")
        actor_ids = [
            r["actor_id"]
            for d in app["deployments"].values()
            for r in d.get("replicas", [])
            if r.get("actor_id")
        ]
        resources, source = self._actor_resources(actor_ids)
        deployments = {}
        for name, d in app["deployments"].items():
            cfg = d.get("deployment_config") or {}
            scaling = cfg.get("autoscaling_config")
            options = cfg.get("ray_actor_options") or {}
            replicas = [
                ReplicaView(
                    replica_id=r["replica_id"],
                    actor_id=r.get("actor_id"),
                    state=_enum_name(r.get("state")),
                    pid=r.get("pid"),
                    node_id=r.get("node_id"),
                    required_resources=resources.get(r.get("actor_id") or "", {}),
                )
                for r in d.get("replicas", [])
            ]
            deployments[name] = DeploymentView(
                name=name,
                status=_enum_name(d.get("status")),
                message=d.get("message") or "",
                target_replicas=d.get("target_num_replicas"),
                replica_states=dict(Counter(r.state for r in replicas)),
                replicas=replicas,
                autoscaling=AutoscalingView.model_validate(
                    {k: scaling.get(k) for k in AutoscalingView.model_fields if k in scaling}
                )
                if scaling
                else None,
                actor_options=ActorOptionsView(
                    num_cpus=options.get("num_cpus"),
                    memory=int(options["memory"]) if options.get("memory") else None,
                    resources=options.get("resources") or {},
                    env_var_names=sorted(((options.get("runtime_env") or {}).get("env_vars") or {}).keys()),
                ),
            )
        return AppView(
            name=app_name,
            status=_enum_name(app.get("status")),
            message=app.get("message") or "",
            deployments=deployments,
            resources_source=source,
        )

    def _actor_resources(
        self, actor_ids: list[str]
    ) -> tuple[dict[str, dict[str, float]], Literal["state_api", "gcs", "none"]]:
        if not actor_ids:
            return {}, "none"
        if self._state_api is not False:
            try:
                from ray.util.state import list_actors

                found = {}
                for actor_id in actor_ids:
                    for actor in list_actors(filters=[("actor_id", "=", actor_id)], detail=True, timeout=5):
                        found[actor.actor_id] = dict(actor.required_resources or {})
                self._state_api = True
                return found, "state_api"
            except Exception as exc:  # no dashboard on this cluster: the state API server is absent
                log.debug("Ray state API unavailable (%s); reading the GCS actor table", exc)
                self._state_api = False
        return self._gcs_actor_resources(actor_ids), "gcs"

    @staticmethod
    def _gcs_actor_resources(actor_ids: list[str]) -> dict[str, dict[str, float]]:
        # Same table the state API reads, without the dashboard in between.
        import ray
        from ray._private.state import state as global_state
        from ray.core.generated import gcs_pb2

        accessor = global_state._connect_and_get_accessor()
        found: dict[str, dict[str, float]] = {}
        for actor_id in actor_ids:
            raw = accessor.get_actor_info(ray.ActorID(bytes.fromhex(actor_id)))
            if raw is not None:
                data = gcs_pb2.ActorTableData.FromString(raw)
                found[actor_id] = {k: float(v) for k, v in data.required_resources.items()}
        return found
