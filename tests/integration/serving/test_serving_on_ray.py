"""The pool and dedicated deployments on a real Ray cluster (the session's ``ray_cluster``).

Kept lean: one pool app shared by the pool tests, one dedicated app. Every app name is unique to
this module and removed at the end, since the cluster is shared by the session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet_core.schemas import ResourceQuota
from fleet_core.serving import (
    DEDICATED_DEPLOYMENT,
    POOL_DEPLOYMENT,
    Placement,
    PoolConfig,
    PoolSizing,
    model_budget,
)
from fleet_serving import PoolReplicaStats, ServingControl, UnknownModelError
from support.serving import BuiltModel, category_pipeline, logistic_model, python_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUFFIX = uuid.uuid4().hex[:6]
IDLE_UNLOAD_S = 2.0


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def control(ray_cluster: str) -> ServingControl:
    control = ServingControl(deploy_timeout_s=120)
    control.connect(ray_cluster)
    # The driver connection stays for the session: other modules may share it. ``connect`` turned
    # off Ray's auto-init, so handles outliving the head cannot start a stray local cluster.
    return control


def replica_env(serving_dir: Path) -> dict[str, str]:
    # Ray workers do not inherit the driver's env: whatever FLEET_* a replica needs is passed.
    return {"FLEET_HOME": str(serving_dir / "replica-home"), "FLEET_SERVING_ALLOW_PYTHON": "true"}


@dataclass
class Pool:
    app: str
    control: ServingControl
    iris: BuiltModel
    churn: BuiltModel
    config: PoolConfig
    sizing: PoolSizing
    env: dict[str, str]

    def predict(self, key: str, rows: list[dict]) -> list:
        handle = self.control.handle(Placement(kind="pool", app=self.app, deployment=POOL_DEPLOYMENT))
        return handle.options(multiplexed_model_id=key).predict.remote(rows).result(timeout_s=60)

    def stats(self) -> PoolReplicaStats:
        handle = self.control.handle(Placement(kind="pool", app=self.app, deployment=POOL_DEPLOYMENT))
        return handle.stats.remote().result(timeout_s=30)


@pytest.fixture(scope="module")
def pool(control: ServingControl, serving_dir: Path) -> Iterator[Pool]:
    iris = logistic_model(serving_dir, model=f"iris-{SUFFIX}")
    churn = category_pipeline(serving_dir, model=f"churn-{SUFFIX}")
    config = PoolConfig(
        models={iris.spec.key: iris.spec, churn.spec.key: churn.spec}, idle_unload_s=IDLE_UNLOAD_S
    )
    # One replica, so every call (and stats()) lands on the same cache.
    sizing = PoolSizing(min_replicas=1, max_replicas=1, num_cpus=0.25, max_models_per_replica=8)
    app = f"test-pool-{SUFFIX}"
    env = replica_env(serving_dir)
    control.apply_pool(config, sizing, env, app_name=app)
    try:
        yield Pool(app, control, iris, churn, config, sizing, env)
    finally:
        control.remove(app)


def test_pool_serves_two_models_by_key_and_refuses_an_unknown_key(pool: Pool) -> None:
    assert pool.predict(pool.iris.spec.key, pool.iris.rows(10)) == pool.iris.expected(10)
    assert pool.predict(pool.churn.spec.key, pool.churn.rows(10)) == pool.churn.expected(10)
    with pytest.raises(UnknownModelError, match="nope:1"):
        pool.predict("nope:1", pool.iris.rows(1))
    view = pool.control.describe(pool.app)
    assert view.status == "RUNNING"
    assert {r.state for r in view.deployments[POOL_DEPLOYMENT].replicas} == {"RUNNING"}
    # The replica reserves the sizing's memory and derives its model budget from its empty RSS.
    stats = pool.stats()
    assert pool.sizing.memory_mb is not None and stats.baseline_rss_bytes is not None
    assert stats.memory_reserved_bytes == pool.sizing.memory_mb * 2**20
    assert stats.budget_bytes == model_budget(pool.sizing.memory_mb * 2**20, stats.baseline_rss_bytes)
    assert stats.loaded_bytes == sum(m.bytes for m in stats.loaded) > 0


def test_pool_unloads_an_idle_model_and_reloads_it_on_the_next_call(pool: Pool) -> None:
    key = pool.iris.spec.key
    assert pool.predict(key, pool.iris.rows(3)) == pool.iris.expected(3)
    assert key in [m.key for m in pool.stats().loaded]
    deadline = time.monotonic() + IDLE_UNLOAD_S * 5
    while key in [m.key for m in pool.stats().loaded]:
        assert time.monotonic() < deadline, f"{key} still loaded after {IDLE_UNLOAD_S * 5}s idle"
        time.sleep(0.5)
    assert pool.stats().unloads >= 1
    assert pool.predict(key, pool.iris.rows(3)) == pool.iris.expected(3)
    assert key in [m.key for m in pool.stats().loaded]


def test_pool_reconfigure_adds_a_model_without_restarting_replicas(pool: Pool, serving_dir: Path) -> None:
    before = pool.stats()
    extra = logistic_model(serving_dir, model=f"extra-{SUFFIX}", seed=1)
    rules = python_model(serving_dir, model=f"rules-{SUFFIX}", threshold=10.0)
    models = {**pool.config.models, extra.spec.key: extra.spec, rules.key: rules}
    config = pool.config.model_copy(update={"models": models})
    view = pool.control.apply_pool(config, pool.sizing, pool.env, app_name=pool.app)
    assert pool.predict(extra.spec.key, extra.rows(3)) == extra.expected(3)
    after = pool.stats()
    assert (after.replica_id, after.actor_id) == (before.replica_id, before.actor_id)
    assert extra.spec.key in after.configured
    assert [r.actor_id for r in view.deployments[POOL_DEPLOYMENT].replicas] == [before.actor_id]
    # Publisher code never runs in the process other teams' models share, even if configured there.
    with pytest.raises(Exception, match="own deployment"):
        pool.predict(rules.key, [{"amount": 3}])


def test_the_pool_catalog_lives_in_rays_kv_store_and_only_the_last_few_are_kept(pool: Pool) -> None:
    from ray.experimental import internal_kv as kv

    from fleet_serving import catalog

    keys = []
    for i in range(catalog.KEEP + 2):  # each apply adds a version: a new catalog, a reconfiguration
        extra = pool.iris.spec.model_copy(update={"model": f"more-{i}-{SUFFIX}"})
        config = pool.config.model_copy(update={"models": {**pool.config.models, extra.key: extra}})
        pool.control.apply_pool(config, pool.sizing, pool.env, app_name=pool.app)
        keys.append(catalog.encode(config, pool.app)[0].key)
    assert f"more-{catalog.KEEP + 1}-{SUFFIX}:1" in pool.stats().configured
    assert pool.predict(pool.iris.spec.key, pool.iris.rows(2)) == pool.iris.expected(2)
    kept = [kv._internal_kv_exists(k, namespace=catalog.NAMESPACE) for k in keys]
    assert kept == [False] * 2 + [True] * catalog.KEEP
    # A removed app leaves nothing behind (checked on a catalog published under another name).
    ref, data = catalog.encode(pool.config, f"gone-{SUFFIX}")
    catalog.publish(f"gone-{SUFFIX}", ref, data)
    assert catalog.fetch(ref) == pool.config.models
    catalog.forget(f"gone-{SUFFIX}")
    assert kv._internal_kv_list(f"{catalog.PREFIX}gone-{SUFFIX}/", namespace=catalog.NAMESPACE) == []
    pool.control.apply_pool(pool.config, pool.sizing, pool.env, app_name=pool.app)


ENV_PROBE = """
import os


class Model:
    def predict(self, rows):
        return [os.environ.get(row["name"], "<unset>") for row in rows]
"""


async def test_a_python_deployment_runs_without_store_credentials_from_the_handed_archive(
    control: ServingControl, serving_dir: Path
) -> None:
    from fleet_core.schemas import FieldSpec, Signature
    from support.serving import make_spec, python_archive

    signature = Signature(inputs=[FieldSpec(name="name", type="string")])
    spec = make_spec(
        serving_dir, f"probe-{SUFFIX}", "python", python_archive(model_py=ENV_PROBE), signature, task="other"
    )
    env = replica_env(serving_dir) | {"FLEET_S3_ACCESS_KEY": "fleet", "FLEET_S3_SECRET_KEY": "s3-secret"}
    app = f"test-python-{SUFFIX}"
    try:
        control.apply_dedicated(spec, ResourceQuota(num_cpus=0.25), 30.0, env, app_name=app)
        handle = control.handle(Placement(kind="dedicated", app=app, deployment=DEDICATED_DEPLOYMENT))
        names = ["FLEET_S3_ACCESS_KEY", "FLEET_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "FLEET_JWT_SECRET"]
        seen = await handle.predict.remote([{"name": n} for n in names])
        assert seen == ["", "", "", ""], "the publisher's code sees no credentials"
    finally:
        control.remove(app)


async def test_dedicated_deployment_applies_its_quota_and_batches_requests(
    control: ServingControl, serving_dir: Path
) -> None:
    built = logistic_model(serving_dir, model=f"fraud-{SUFFIX}")
    quota = ResourceQuota(
        num_cpus=0.5, memory_mb=300, min_replicas=0, max_replicas=2, target_ongoing_requests=3
    )
    app = f"test-dedicated-{SUFFIX}"
    try:
        view = control.apply_dedicated(built.spec, quota, 30.0, replica_env(serving_dir), app_name=app)
        deployment = view.deployments[DEDICATED_DEPLOYMENT]
        assert deployment.autoscaling is not None
        assert (deployment.autoscaling.min_replicas, deployment.autoscaling.max_replicas) == (0, 2)
        assert deployment.autoscaling.target_ongoing_requests == 3
        assert deployment.autoscaling.initial_replicas == 1
        assert deployment.autoscaling.downscale_to_zero_delay_s == 30.0
        assert deployment.actor_options.num_cpus == 0.5
        assert deployment.actor_options.memory == 300 * 2**20
        assert "RAY_SERVE_THROUGHPUT_OPTIMIZED" in deployment.actor_options.env_var_names
        # Ray's own view of the running replica actor, not just what Serve was asked for.
        (replica,) = deployment.replicas
        assert replica.required_resources["CPU"] == pytest.approx(0.5)
        assert replica.required_resources["memory"] == pytest.approx(300 * 2**20)
        assert view.resources_source in {"state_api", "gcs"}

        placement = Placement(kind="dedicated", app=app, deployment=DEDICATED_DEPLOYMENT)
        handle = control.handle(placement).options(multiplexed_model_id=built.spec.key)
        rows = built.rows(40)
        responses = await asyncio.gather(*(handle.predict.remote([row]) for row in rows))
        assert [p for r in responses for p in r] == built.expected(40)
    finally:
        control.remove(app)
    assert app not in [a.name for a in control.list_apps()]
