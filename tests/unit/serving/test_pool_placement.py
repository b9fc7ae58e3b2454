"""How the pool deployment is told to place models: its request router and per-node bound."""

from __future__ import annotations

import ast
from pathlib import Path

from ray.serve.config import RequestRouterConfig

import fleet_serving.pool_router as pool_router
from fleet_core.serving import PoolConfig, PoolSizing
from fleet_serving.deployments import pool_application, pool_placement_options
from support.serving import catalog_ref


def test_the_pool_routes_by_rendezvous_with_the_sizing_bounds() -> None:
    options = pool_placement_options(PoolSizing(hot_ongoing_requests=3, max_replicas_per_model=3))
    config = options["request_router_config"]
    assert isinstance(config, RequestRouterConfig)
    assert config.request_router_class == pool_router.POOL_ROUTER_PATH
    assert config.request_router_kwargs == {"hot_ongoing_requests": 3.0, "max_replicas_per_model": 3}
    assert "max_replicas_per_node" not in options


def test_serve_placement_keeps_serves_own_router() -> None:
    assert pool_placement_options(PoolSizing(placement="serve")) == {}


def test_replicas_per_node_reach_the_deployment() -> None:
    app = pool_application(catalog_ref(PoolConfig()), PoolSizing(max_replicas_per_node=1, max_replicas=2))
    assert app._bound_deployment._replica_config.max_replicas_per_node == 1


def test_changing_the_placement_restarts_the_pool() -> None:
    # Serve applies a same-version change as a lightweight update; the router must not be one.
    version = lambda sizing: pool_application(catalog_ref(PoolConfig()), sizing)._bound_deployment.version  # noqa: E731
    assert version(PoolSizing()) != version(PoolSizing(placement="serve"))
    assert version(PoolSizing()) != version(PoolSizing(hot_ongoing_requests=9))
    assert version(PoolSizing()) == version(PoolSizing())


def test_the_router_module_needs_nothing_the_gateway_lacks() -> None:
    # Serve ships the router module to the gateway by value; what it imports must be there.
    tree = ast.parse(Path(pool_router.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.level)
    }
    assert imported <= {"__future__", "random", "time", "collections", "typing", "ray", "fleet_core"}


def test_a_gateway_lane_can_make_a_model_hot_with_the_default_settings() -> None:
    """Batching keeps at most ``FLEET_BATCH_MAX_INFLIGHT`` calls of a version in flight per
    gateway process, and the pool router (one per gateway process) counts only its own calls: the
    hot threshold must be reachable from one lane, or a busy model never leaves its first replica.
    With the defaults, a lane's second call may go to the model's next replica."""
    from fleet_core.placement import spread
    from fleet_gateway.batching import BatchPolicy
    from fleet_gateway.settings import GatewaySettings

    lane_limit = GatewaySettings().batch_max_inflight
    sizing = PoolSizing()
    assert BatchPolicy().max_inflight == lane_limit
    assert sizing.hot_ongoing_requests < lane_limit
    in_flight = {"a": 0, "b": 0}
    chosen = []
    for _ in range(lane_limit):  # the lane's calls, sent while the earlier ones still run
        allowed = spread(
            ["a", "b"],
            hot=lambda r: in_flight[r] >= sizing.hot_ongoing_requests,
            full=lambda r: False,
            max_replicas=sizing.max_replicas_per_model,
        )
        pick = min(allowed, key=in_flight.__getitem__)  # Serve takes the less busy one
        in_flight[pick] += 1
        chosen.append(pick)
    assert chosen == ["a", "b"]


def test_replicas_log_no_access_line_per_call_and_report_model_ids_each_second() -> None:
    """The gateway logs each request; a pool replica does not repeat it per call. The Serve API the
    replica uses to slow its model-id reports is private: this fails when a Ray upgrade moves it."""
    import inspect

    from ray.serve.multiplex import _ModelMultiplexWrapper

    from fleet_serving.deployments import MODEL_IDS_PUSH_INTERVAL_S, REPLICA_LOGGING

    deployment = pool_application(catalog_ref(PoolConfig()), PoolSizing())._bound_deployment
    assert deployment.logging_config["enable_access_log"] is False
    assert REPLICA_LOGGING == {"enable_access_log": False}
    assert isinstance(_ModelMultiplexWrapper._PUSH_MULTIPLEXED_MODEL_IDS_TASK_NAME, str)
    assert callable(_ModelMultiplexWrapper._push_model_ids_info)
    assert "self.metrics_pusher = MetricsPusher()" in inspect.getsource(_ModelMultiplexWrapper.__init__)
    assert MODEL_IDS_PUSH_INTERVAL_S >= 1.0
