"""Run a service as a Ray driver on its own zero-CPU Ray node: the container entry point of the
deployer, gateway and retrainer images.

A Ray driver joins a cluster with ``ray.init(address=...)`` only from a machine that runs a raylet
of that cluster; a container outside the cluster cannot. So, when ``FLEET_RAY_JOIN`` names the
head's GCS address, this starts ``ray start --address=... --num-cpus=0 --block`` (a node that
takes no replicas or tasks), waits until its raylet listens, then runs the service with
``FLEET_RAY_ADDRESS`` set to the same head. The two live and die together: SIGTERM/SIGINT go to
the service first, then the node leaves; if the node dies, the service is stopped and the exit
code is non-zero, so the orchestrator restarts the pair. Without ``FLEET_RAY_JOIN`` the command
simply replaces this process.

    python -m fleet_core.raynode -- python -m fleet_gateway serve

Environment:

- ``FLEET_RAY_JOIN``: the head's ``host:port`` (GCS, usually 6379); empty: run the command alone.
- ``FLEET_RAY_NODE_IP``: this node's address as the cluster sees it (Kubernetes: the pod IP from
  the downward API); default: the address ``hostname`` resolves to.
- ``FLEET_RAY_NODE_MANAGER_PORT``: the raylet's port (default 6380), fixed so a NetworkPolicy or
  firewall can name it.
- ``FLEET_RAY_JOIN_TIMEOUT_S``: how long the node may take to join (default 120).
- ``FLEET_RAY_START_ARGS``: more ``ray start`` options, shell-quoted (``--labels=...``,
  ``--object-store-memory=...``, or fixed ports when several nodes share one network namespace).
- ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN``: passed through to Ray unchanged (token auth in production).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_NODE_MANAGER_PORT = 6380
STOP_GRACE_S = 20.0
EXIT_NODE_LOST = 70
STARTED_MARKER = "Ray runtime started"


class JoinError(RuntimeError):
    """The Ray node could not join the cluster."""


def ray_command() -> str:
    """The ``ray`` executable of this interpreter's environment (a venv's ``bin``), else PATH's."""
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise JoinError("the `ray` command is not installed in this image")
    return found


def node_ip() -> str:
    configured = os.environ.get("FLEET_RAY_NODE_IP", "").strip()
    if configured:
        return configured
    return socket.gethostbyname(socket.gethostname())


def start_command(join: str, ip: str, node_manager_port: int) -> list[str]:
    return [
        ray_command(),
        "start",
        f"--address={join}",
        f"--node-ip-address={ip}",
        f"--node-manager-port={node_manager_port}",
        "--num-cpus=0",
        "--num-gpus=0",
        "--block",
        "--disable-usage-stats",
        *shlex.split(os.environ.get("FLEET_RAY_START_ARGS", "")),
    ]


def _relay(node: subprocess.Popen[bytes], started: threading.Event) -> None:
    """Copy the node's output to stderr (the container log) and spot the end of its start."""
    assert node.stdout is not None
    for raw in node.stdout:
        line = raw.decode(errors="replace")
        sys.stderr.write(line)
        if STARTED_MARKER in line:
            started.set()


def _stop(process: subprocess.Popen[bytes], sig: int, grace_s: float) -> int:
    """Signal a child's whole process group, escalate to SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return process.returncode
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return process.wait()
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


def join_and_run(command: Sequence[str], join: str) -> int:
    """Start the node, run ``command`` beside it, and return the exit code to leave with."""
    ip = node_ip()
    port = int(os.environ.get("FLEET_RAY_NODE_MANAGER_PORT", DEFAULT_NODE_MANAGER_PORT))
    timeout_s = float(os.environ.get("FLEET_RAY_JOIN_TIMEOUT_S", "120"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    # Own process groups, so stopping one stops everything it started (raylet, workers).
    node = subprocess.Popen(
        start_command(join, ip, port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = threading.Event()
    threading.Thread(target=_relay, args=(node, started), name="ray-node-log", daemon=True).start()
    # `ray start` says so once its raylet has registered with the head; the raylet's port opens
    # earlier, and a driver started then may not see its own node yet.
    deadline = time.monotonic() + timeout_s
    while not started.wait(0.2):
        if node.poll() is not None:
            raise JoinError(f"`ray start --address={join}` exited with {node.returncode}")
        if time.monotonic() > deadline:
            _stop(node, signal.SIGTERM, 2.0)  # it never joined: nothing to drain
            raise JoinError(f"the Ray node did not join {join} within {timeout_s:.0f} s")
    print(f"raynode: joined {join} as a 0-CPU node at {ip}:{port}", file=sys.stderr, flush=True)

    service = subprocess.Popen(list(command), env=dict(env, FLEET_RAY_ADDRESS=join), start_new_session=True)
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if service.poll() is None:
            os.killpg(service.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while True:
            code = service.poll()
            if code is not None:
                break
            if node.poll() is not None and not stopping:
                print("raynode: the Ray node exited; stopping the service", file=sys.stderr, flush=True)
                _stop(service, signal.SIGTERM, STOP_GRACE_S)
                return EXIT_NODE_LOST
            time.sleep(0.2)
        return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
    finally:
        # The service has stopped (or is being abandoned): only now may the node leave, so the
        # driver never outlives its raylet.
        _stop(service, signal.SIGTERM, STOP_GRACE_S)
        _stop(node, signal.SIGTERM, STOP_GRACE_S)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m fleet_core.raynode -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    join = os.environ.get("FLEET_RAY_JOIN", "").strip()
    if not join:
        os.execvp(args[0], args)
    try:
        return join_and_run(args, join)
    except JoinError as exc:
        print(f"raynode: {exc}", file=sys.stderr, flush=True)
        return EXIT_NODE_LOST


if __name__ == "__main__":
    sys.exit(main())
