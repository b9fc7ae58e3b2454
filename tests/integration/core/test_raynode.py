"""The container entry point of the Ray-driver services (``python -m fleet_core.raynode``) against a
real Ray head: the service runs on its own zero-CPU node, gets the head's address, and stops
together with that node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fleet_core.raynode import EXIT_NODE_LOST
from fleet_sdk.embedded_broker import free_port
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV
from support.raylets import raylet_running

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RAYNODE = [sys.executable, "-m", "fleet_core.raynode", "--"]


def node_env(join: str, port: int) -> dict[str, str]:
    return dict(
        os.environ,
        **RAY_CLIENT_ENV,
        FLEET_RAY_JOIN=join,
        FLEET_RAY_NODE_IP="127.0.0.1",
        FLEET_RAY_NODE_MANAGER_PORT=str(port),
        FLEET_RAY_JOIN_TIMEOUT_S="60",
    )


def test_the_service_runs_as_a_driver_on_its_own_zero_cpu_node(ray_cluster: str) -> None:
    port = free_port()
    service = (
        "import os, sys, ray\n"
        "ray.init(os.environ['FLEET_RAY_ADDRESS'])\n"
        "port = int(os.environ['FLEET_RAY_NODE_MANAGER_PORT'])\n"
        "mine = [n for n in ray.nodes() if n['Alive'] and n['NodeManagerPort'] == port]\n"
        "print('NODE', len(mine), mine[0]['Resources'].get('CPU', 0.0) if mine else None)\n"
        "sys.exit(3)\n"
    )
    result = subprocess.run(
        [*RAYNODE, sys.executable, "-c", service],
        env=node_env(ray_cluster, port),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "NODE 1 0.0" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 3, "the service's exit code is the container's"
    assert not raylet_running(port), "the node left with its service"


def test_sigterm_stops_the_service_first_then_the_node(ray_cluster: str) -> None:
    port = free_port()
    service = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('SERVICE GOT SIGTERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('READY', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [*RAYNODE, sys.executable, "-c", service],
        env=node_env(ray_cluster, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        assert raylet_running(port)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        rest = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert "SERVICE GOT SIGTERM" in rest
    assert code == 0
    assert time.monotonic() - started < 45
    assert not raylet_running(port)


def test_an_unreachable_head_fails_the_container_with_a_reason() -> None:
    env = dict(node_env(f"127.0.0.1:{free_port()}", free_port()), FLEET_RAY_JOIN_TIMEOUT_S="8")
    result = subprocess.run(
        [*RAYNODE, sys.executable, "-c", "print('SHOULD NOT RUN')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_NODE_LOST
    assert "SHOULD NOT RUN" not in result.stdout
    assert "raynode:" in result.stderr


def test_without_a_head_to_join_the_command_runs_alone() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEET_RAY_JOIN"}
    process = subprocess.Popen(
        [*RAYNODE, sys.executable, "-c", "import os, sys; print(os.getpid()); sys.exit(4)"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 4
    assert int(out) == process.pid, "the command replaced the entry point: signals reach it directly"
