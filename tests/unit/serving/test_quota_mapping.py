"""Quotas and pool sizing become Ray actor options and Serve autoscaling config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fleet_core.schemas import ResourceQuota
from fleet_core.serving import PoolConfig, PoolSizing
from fleet_serving import SPOT_RESOURCE, pool_application, quota_actor_options, quota_autoscaling
from fleet_serving.catalog import encode as encode_catalog
from support.serving import catalog_ref, logistic_model


def test_quota_becomes_actor_options_with_memory_in_bytes_and_the_replica_env() -> None:
    quota = ResourceQuota(num_cpus=0.5, memory_mb=300)
    options = quota_actor_options(quota, {"FLEET_S3_ENDPOINT": "http://s3"})
    assert options["num_cpus"] == 0.5
    assert options["memory"] == 300 * 2**20
    env = options["runtime_env"]["env_vars"]
    assert env["FLEET_S3_ENDPOINT"] == "http://s3"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert "resources" not in options


def test_quota_without_memory_leaves_memory_to_ray() -> None:
    assert "memory" not in quota_actor_options(ResourceQuota(), None)


def test_spot_quota_asks_for_the_spot_resource_only_when_the_cluster_has_it() -> None:
    spot = ResourceQuota(capacity_class="spot")
    assert quota_actor_options(spot, None, spot_resource=True)["resources"] == {SPOT_RESOURCE: 0.001}
    assert "resources" not in quota_actor_options(spot, None, spot_resource=False)


def test_default_quota_scales_to_zero_after_the_idle_delay_but_starts_one_replica() -> None:
    scaling = quota_autoscaling(ResourceQuota(max_replicas=3, target_ongoing_requests=4), idle_s=120)
    assert scaling == {
        "min_replicas": 0,
        "max_replicas": 3,
        "target_ongoing_requests": 4,
        "initial_replicas": 1,
        "downscale_to_zero_delay_s": 120,
    }


def test_pool_version_ignores_the_model_list_so_reconfiguring_does_not_restart(tmp_path: Path) -> None:
    spec = logistic_model(tmp_path).spec
    sizing = PoolSizing()
    empty = pool_application(catalog_ref(PoolConfig()), sizing, {"FLEET_HOME": "/x"})
    full = pool_application(catalog_ref(PoolConfig(models={spec.key: spec})), sizing, {"FLEET_HOME": "/x"})
    bigger = pool_application(
        catalog_ref(PoolConfig()), sizing.model_copy(update={"max_models_per_replica": 3}), {}
    )
    version = lambda app: app._bound_deployment.version  # noqa: E731
    assert version(empty) == version(full)
    assert version(empty) != version(bigger)


def test_the_pools_user_config_names_its_catalog_and_does_not_grow_with_the_fleet(tmp_path: Path) -> None:
    # Serve's controller deep-copies user_config ten times a second: 1,000 specs there cost it a
    # third of a core. The specs go to Ray's KV store; user_config only names them by digest.
    spec = logistic_model(tmp_path).spec
    many = PoolConfig(
        models={f"m{i:04d}:1": spec.model_copy(update={"model": f"m{i:04d}"}) for i in range(1000)}
    )
    one = PoolConfig(models={spec.key: spec})
    configs = [
        pool_application(catalog_ref(c), PoolSizing())._bound_deployment.user_config for c in (one, many)
    ]
    assert [len(json.dumps(c)) < 300 for c in configs] == [True, True]
    assert configs[1]["models"] == 1000 and configs[0]["digest"] != configs[1]["digest"]
    ref, data = encode_catalog(many, "fleet-pool")
    assert hashlib.sha256(data).hexdigest() == ref.digest == configs[1]["digest"]
    assert encode_catalog(PoolConfig(models=dict(reversed(many.models.items()))), "fleet-pool")[0] == ref


def test_pool_replicas_reserve_their_memory_and_get_their_budget_at_bind_time() -> None:
    sized = pool_application(catalog_ref(PoolConfig()), PoolSizing(memory_mb=1024, model_budget_mb=200), {})
    deployment = sized._bound_deployment
    assert deployment.ray_actor_options["memory"] == 1024 * 2**20
    assert deployment.init_kwargs == {
        "max_models_per_replica": PoolSizing().max_models_per_replica,
        "memory_bytes": 1024 * 2**20,
        "model_budget_bytes": 200 * 2**20,
    }
    unreserved = pool_application(catalog_ref(PoolConfig()), PoolSizing(memory_mb=None), {})._bound_deployment
    assert "memory" not in unreserved.ray_actor_options
    assert unreserved.version != deployment.version, "a new reservation or budget restarts replicas"
