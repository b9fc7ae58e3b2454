"""The pool's memory budget on a real Ray cluster: a replica with a tiny model budget evicts by
bytes (seen in ``stats()``), an evicted model's next request reloads it, and a model larger than
the whole budget is refused, whether its artifact alone says so or its measured load does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from fleet_core.serving import POOL_DEPLOYMENT, ModelSpec, Placement, PoolConfig, PoolSizing
from fleet_sdk.sklearn import infer_signature
from fleet_serving import PoolReplicaStats, ServingControl
from fleet_serving.errors import ModelTooLargeError
from support.serving import BuiltModel, make_spec, numeric_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUFFIX = uuid.uuid4().hex[:6]
MB = 2**20
BUDGET_MB = 24
RESERVED_MB = 512


def forest(directory: Path, model: str, trees: int, seed: int) -> BuiltModel:
    from sklearn.ensemble import RandomForestClassifier

    frame, y = numeric_frame(n=8000, seed=seed)
    est = RandomForestClassifier(n_estimators=trees, random_state=seed).fit(frame, y)
    spec = make_spec(directory, model, "sklearn", sio.dumps(est), infer_signature(frame, est))
    return BuiltModel(spec, est, frame)


def onnx_forest(directory: Path, model: str) -> ModelSpec:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    frame, y = numeric_frame(n=8000, seed=7)
    est = RandomForestClassifier(n_estimators=300, random_state=7).fit(frame, y)
    onx = to_onnx(est, frame.to_numpy(dtype=np.float32)[:1], options={"zipmap": False})
    return make_spec(directory, model, "onnx", onx.SerializeToString(), infer_signature(frame, est))


@dataclass
class Pool:
    app: str
    control: ServingControl
    forests: list[BuiltModel]
    huge: BuiltModel
    onnx: ModelSpec

    def predict(self, key: str, rows: list[dict]) -> list:
        handle = self.control.handle(Placement(kind="pool", app=self.app, deployment=POOL_DEPLOYMENT))
        return handle.options(multiplexed_model_id=key).predict.remote(rows).result(timeout_s=60)

    def stats(self) -> PoolReplicaStats:
        (replica,) = self.control.pool_stats(self.app)
        return replica


@pytest.fixture(scope="module")
def pool(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    directory = tmp_path_factory.mktemp("pool-memory")
    control = ServingControl(deploy_timeout_s=120)
    control.connect(ray_cluster)
    # ~8.5 MB artifacts under a 24 MB budget: at most two stay loaded (each is charged at least
    # its artifact size, more if its load grew the replica's RSS by more: in a Ray replica, whose
    # other threads allocate too, by up to a few MB).
    forests = [forest(directory, f"forest{i}-{SUFFIX}", trees=135, seed=i) for i in range(4)]
    huge = forest(directory, f"huge-{SUFFIX}", trees=420, seed=9)
    onnx = onnx_forest(directory, f"onnx-{SUFFIX}")
    specs = [*(f.spec for f in forests), huge.spec, onnx]
    config = PoolConfig(models={s.key: s for s in specs}, idle_unload_s=600)
    sizing = PoolSizing(
        min_replicas=1, max_replicas=1, num_cpus=0.25, memory_mb=RESERVED_MB, model_budget_mb=BUDGET_MB
    )
    app = f"test-pool-memory-{SUFFIX}"
    env = {"FLEET_HOME": str(directory / "replica-home")}
    control.apply_pool(config, sizing, env, app_name=app)
    try:
        yield Pool(app, control, forests, huge, onnx)
    finally:
        control.remove(app)


def test_loading_past_the_budget_evicts_by_bytes_and_the_evicted_model_reloads(pool: Pool) -> None:
    for built in pool.forests:
        assert built.spec.size_bytes > BUDGET_MB * MB / 3, "three of them must not fit"
    sizes = {b.spec.key: b.spec.size_bytes for b in pool.forests}
    before = pool.stats()
    assert before.budget_bytes == BUDGET_MB * MB
    assert before.memory_reserved_bytes == RESERVED_MB * MB
    assert before.baseline_rss_bytes is not None and before.baseline_rss_bytes > 50 * MB

    for built in pool.forests:
        assert pool.predict(built.spec.key, built.rows(5)) == built.expected(5)
    stats = pool.stats()
    print({m.key: (m.bytes, sizes[m.key]) for m in stats.loaded}, stats.rss_bytes, stats.baseline_rss_bytes)
    loaded = {m.key: m for m in stats.loaded}
    first, second, _, last = (b.spec.key for b in pool.forests)
    assert last in loaded
    assert first not in loaded and second not in loaded, f"the LRU ones go first: {list(loaded)}"
    assert stats.evictions_by_bytes >= 2
    assert stats.evicted_bytes >= 2 * pool.forests[0].spec.size_bytes * 0.9
    assert stats.loaded_bytes == sum(m.bytes for m in stats.loaded) <= BUDGET_MB * MB
    assert all(m.bytes >= sizes[m.key] for m in stats.loaded), "charged at least the artifact"
    assert all(m.team == "test" for m in stats.loaded)

    # The evicted model's next request is routed (the router was told), reloads it, and succeeds.
    oldest = pool.forests[0]
    assert pool.predict(oldest.spec.key, oldest.rows(8)) == oldest.expected(8)
    again = pool.stats()
    assert first in {m.key for m in again.loaded}
    assert again.evictions_by_bytes > stats.evictions_by_bytes
    assert again.loaded_bytes <= BUDGET_MB * MB


def test_a_model_whose_artifact_exceeds_the_budget_is_refused_without_loading(pool: Pool) -> None:
    key = pool.huge.spec.key
    assert pool.huge.spec.size_bytes > BUDGET_MB * MB
    loaded_before = {m.key for m in pool.stats().loaded}
    with pytest.raises(ModelTooLargeError, match=f"{key}.*dedicated deployment"):
        pool.predict(key, pool.huge.rows(1))
    stats = pool.stats()
    assert key not in {m.key for m in stats.loaded}
    assert {m.key for m in stats.loaded} == loaded_before, "nothing was evicted for it"


def test_a_model_measured_over_the_budget_at_load_is_refused_and_not_kept(pool: Pool) -> None:
    # Its ~6.7 MB graph fits the budget, but an onnxruntime session of it takes ~5x that.
    key = pool.onnx.key
    assert pool.onnx.size_bytes < BUDGET_MB * MB
    with pytest.raises(ModelTooLargeError, match=f"{key}.*measured at load"):
        pool.predict(key, [{"sepal": 5.0, "petal": 2.0, "width": 1.0}])
    stats = pool.stats()
    assert key not in {m.key for m in stats.loaded}
    (refused,) = [r for r in stats.refused if r.key == key]
    assert refused.bytes > BUDGET_MB * MB
    # Asked again, it is refused from what was measured, without another load.
    with pytest.raises(ModelTooLargeError, match=key):
        pool.predict(key, [{"sepal": 5.0, "petal": 2.0, "width": 1.0}])


def test_pool_stats_asks_each_replica_directly(pool: Pool) -> None:
    handle = pool.control.handle(Placement(kind="pool", app=pool.app, deployment=POOL_DEPLOYMENT))
    via_handle: PoolReplicaStats = handle.stats.remote().result(timeout_s=30)
    (direct,) = pool.control.pool_stats(pool.app)
    assert (direct.replica_id, direct.actor_id) == (via_handle.replica_id, via_handle.actor_id)
    assert direct.configured == via_handle.configured
