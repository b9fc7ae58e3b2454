"""A node of a two-node Ray cluster dies under steady traffic through the gateway: no request fails.

The session's Ray head is joined by a second node on this box (``ray start --address``, its own
ports). The pool's two replicas spread over both nodes (Serve's SPREAD scheduling; checked, not
assumed), models are placed by rendezvous hashing so each node's replica holds its own share, and
the gateway (in-process, real ``RayBackend``) calls them at a steady rate. Then the second node's
whole process group (raylet, workers, replica) is killed. Every request must still be answered:
the calls that were in flight on the dead replica are sent again by the gateway, and the dead
replica's models load on the survivor; Serve then starts a replacement replica on the head.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet_core.events import RouteArm, RouteTable
from fleet_core.serving import (
    POOL_DEPLOYMENT,
    ModelRoute,
    Placement,
    PoolConfig,
    PoolSizing,
    RoutesSnapshot,
    ServedVersion,
)
from fleet_sdk.embedded_broker import free_port
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV, ray_bin
from fleet_serving import PoolReplicaStats, ServingControl
from support.gateway import running_gateway
from support.raylets import raylet_running
from support.serving import BuiltModel, logistic_model

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]

SUFFIX = uuid.uuid4().hex[:6]
MODELS = 12
CONNECTIONS = 6
ROWS = 200
"""Rows per call: a call spends a while on its replica, so calls are in flight there when it dies."""
TEAM = "test"


@dataclass
class SecondNode:
    process: subprocess.Popen[bytes]
    node_manager_port: int
    log: Path
    node_id: str = ""

    def kill(self) -> None:
        """The node dies at once, as a machine does: SIGKILL to its raylet and every worker."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_second_node(head: str, log: Path) -> SecondNode:
    port = free_port()
    command = [
        ray_bin(),
        "start",
        f"--address={head}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        f"--node-manager-port={port}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--min-worker-port={free_port()}",
        "--max-worker-port=0",
        "--disable-usage-stats",
        "--block",
    ]
    env = dict(os.environ, **RAY_CLIENT_ENV, RAY_USAGE_STATS_ENABLED="0", RAY_raylet_start_wait_time_s="120")
    env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    env.setdefault("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return SecondNode(process, port, log)


@pytest.fixture
def control(ray_cluster: str) -> ServingControl:
    control = ServingControl(deploy_timeout_s=120)
    control.connect(ray_cluster)
    return control


def joined(node: SecondNode, deadline_s: float) -> bool:
    """Wait until the node is alive in the cluster (True) or its ``ray start`` gave up (False)."""
    import ray

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            return False
        for n in ray.nodes():
            if n["Alive"] and n["NodeManagerPort"] == node.node_manager_port:
                node.node_id = n["NodeID"]
                return True
        time.sleep(0.5)
    return False


@pytest.fixture
def second_node(ray_cluster: str, control: ServingControl, tmp_path: Path) -> Iterator[SecondNode]:
    # Ray 2.60's raylet gives its node's agents 15 s to start and aborts otherwise; on a busy box
    # their Python imports alone can take longer, so a node that failed to start is tried again.
    started: list[SecondNode] = []
    try:
        for attempt in range(3):
            node = start_second_node(ray_cluster, tmp_path / f"second-node-{attempt}.log")
            started.append(node)
            if joined(node, 150):
                break
            node.kill()
        else:
            pytest.fail("the second Ray node did not join: " + started[-1].log.read_text()[-3000:])
        yield node
    finally:
        for node in started:
            node.kill()
            assert not raylet_running(node.node_manager_port)


@dataclass
class Traffic:
    """Steady calls through the gateway: each connection walks the models in turn."""

    statuses: Counter[int] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    calls_after_kill: int = 0
    slowest_after_kill_s: float = 0.0
    killed: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def connection(self, gw: Any, models: list[BuiltModel], offset: int) -> None:
        headers = gw.auth(teams=[TEAM])
        i = offset
        while not self.stop.is_set():
            built = models[i % len(models)]
            i += 1
            started = time.monotonic()
            r = await gw.client.post(
                f"/v2/models/{built.spec.model}/infer", json={"inputs": built.rows(ROWS)}, headers=headers
            )
            self.statuses[r.status_code] += 1
            if self.killed:
                self.calls_after_kill += 1
                self.slowest_after_kill_s = max(self.slowest_after_kill_s, time.monotonic() - started)
            if r.status_code != 200:
                self.errors.append(f"{built.spec.model}: {r.status_code} {r.text[:300]}")
            elif r.json()["predictions"] != built.expected(ROWS):
                self.errors.append(f"{built.spec.model}: wrong answer {r.json()}")
            else:
                self.answered[built.spec.model] += 1
            await asyncio.sleep(0.01)


def routes_for(models: list[BuiltModel], placement: Placement) -> RoutesSnapshot:
    return RoutesSnapshot(
        models=[
            ModelRoute(
                model=b.spec.model,
                team=b.spec.team,
                table=RouteTable(model=b.spec.model, revision=1, arms=[RouteArm(version=1, weight=100)]),
                versions=[ServedVersion(spec=b.spec, placement=placement, state="ready")],
            )
            for b in models
        ],
        generated_at=datetime.now(UTC),
    )


async def replica_stats(
    control: ServingControl, placement: Placement, count: int
) -> dict[str, PoolReplicaStats]:
    """Each replica's ``stats()`` (calls without a model key go to a replica drawn at random)."""
    handle = control.handle(placement)
    seen: dict[str, PoolReplicaStats] = {}
    for _ in range(100):
        stats = await handle.stats.remote()
        seen[stats.replica_id] = stats
        if len(seen) >= count:
            break
    return seen


async def test_killing_a_node_under_traffic_fails_no_request(
    ray_cluster: str, control: ServingControl, second_node: SecondNode, tmp_path: Path
) -> None:
    models = [logistic_model(tmp_path, model=f"spread-{SUFFIX}-{i}", seed=i) for i in range(MODELS)]
    app = f"test-node-loss-{SUFFIX}"
    placement = Placement(kind="pool", app=app, deployment=POOL_DEPLOYMENT)
    sizing = PoolSizing(min_replicas=2, max_replicas=2, num_cpus=0.5, max_models_per_replica=MODELS + 4)
    config = PoolConfig(models={b.spec.key: b.spec for b in models})
    await asyncio.to_thread(
        control.apply_pool, config, sizing, {"FLEET_HOME": str(tmp_path / "replica-home")}, app_name=app
    )
    try:
        view = await asyncio.to_thread(control.describe, app)
        nodes = {r.replica_id: r.node_id for r in view.deployments[POOL_DEPLOYMENT].replicas}
        assert second_node.node_id in nodes.values() and len(set(nodes.values())) == 2, (
            f"the pool's replicas did not spread over both nodes: {nodes}"
        )
        doomed = next(rid for rid, node in nodes.items() if node == second_node.node_id)

        traffic = Traffic()
        async with running_gateway(
            routes_for(models, placement), ray_backend=True, ray_address=ray_cluster, predict_timeout_s=20
        ) as gw:
            deadline = time.monotonic() + 60
            while (await gw.client.get("/v2/health/ready")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            loops = [asyncio.create_task(traffic.connection(gw, models, i * 2)) for i in range(CONNECTIONS)]
            try:
                deadline = time.monotonic() + 60  # every model answered: loaded where its key ranks first
                while len(traffic.answered) < MODELS or min(traffic.answered.values()) < 3:
                    assert time.monotonic() < deadline, (traffic.answered, traffic.errors[:3])
                    await asyncio.sleep(0.2)
                before = await replica_stats(control, placement, 2)
                on_doomed = {m.key for m in before[doomed].loaded}
                assert on_doomed, f"no model was placed on the second node's replica: {before}"
                assert traffic.statuses == Counter({200: sum(traffic.statuses.values())}), traffic.errors

                second_node.kill()
                killed_at = time.monotonic()
                traffic.killed = True
                assert not raylet_running(second_node.node_manager_port)

                # Serve replaces the lost replica (on the head: the only node left) while traffic runs.
                deadline = time.monotonic() + 100
                while True:
                    view = await asyncio.to_thread(control.describe, app)
                    running = [r for r in view.deployments[POOL_DEPLOYMENT].replicas if r.state == "RUNNING"]
                    if len(running) == 2 and doomed not in {r.replica_id for r in running}:
                        replaced_s = time.monotonic() - killed_at
                        break
                    assert time.monotonic() < deadline, f"the lost replica was not replaced: {view}"
                    await asyncio.sleep(1)
                await asyncio.sleep(2)
            finally:
                traffic.stop.set()
                await asyncio.gather(*loops)
            retries = gw.app.state.gateway_metrics.replica_retries

        assert traffic.errors == [], traffic.errors[:5]
        assert set(traffic.statuses) == {200}
        assert traffic.calls_after_kill > 100, "traffic went on while the node was lost"
        assert {r.node_id for r in running} == set(nodes.values()) - {second_node.node_id}
        after = await replica_stats(control, placement, 2)
        survivors_hold = {m.key for s in after.values() for m in s.loaded}
        assert on_doomed <= survivors_hold, "the lost replica's models answer from the survivors"
        retried = sum(
            s.value for metric in retries.collect() for s in metric.samples if s.name.endswith("_total")
        )
        total = sum(traffic.statuses.values())
        print(
            f"calls {total}, after the kill {traffic.calls_after_kill} "
            f"(slowest {traffic.slowest_after_kill_s:.2f} s), "
            f"gateway retries {retried}, replica replaced after {replaced_s:.1f} s"
        )
    finally:
        await asyncio.to_thread(control.remove, app)
