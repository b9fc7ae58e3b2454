"""A local Ray head node as a child process, for the embedded stack and the tests.

The head is started with ``ray start --head --block`` on free loopback ports so several stacks
(or a stack and the test suite) can run side by side; stopping the child process tears the whole
local cluster down. Deployer and gateway connect to it with ``ray.init(address=...)``, so serving
survives a deployer restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleet_sdk.embedded_broker import free_port, port_open

# Ray 2.5x turns on token auth for new local clusters, keyed by ~/.ray/auth_token; a loopback-only
# embedded cluster gains nothing from it and breaks when that shared file changes under it. Every
# process that joins the embedded cluster (head, deployer, gateway, tests) gets the same setting.
# Ray's `uv run` hook would ship the working directory to the workers as a runtime env whenever a
# driver descends from `uv run` (`make up`, `make demo`): the workers already run in this venv.
RAY_CLIENT_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def ray_bin() -> str:
    """The ``ray`` command of this interpreter's environment."""
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed (pip install 'ray[serve]')")
    return found


class EmbeddedRay:
    """``ray start --head --block`` on loopback with its own ports and temp dir."""

    def __init__(
        self,
        *,
        port: int | None = None,
        num_cpus: int | None = None,
        log_path: Path | None = None,
        temp_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.num_cpus = num_cpus
        self.log_path = log_path
        # Ray's socket paths must stay short (AF_UNIX limit ~107 bytes): keep the temp dir shallow.
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.env = env or {}
        """Environment on top of the embedded defaults (say, RAY_AUTH_MODE=token and its token)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            ray_bin(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--ray-client-server-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--min-worker-port={free_port()}",
            "--max-worker-port=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
        ]
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        return cmd

    def start(self, timeout_s: float = 90.0) -> None:
        env = dict(os.environ)
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # ...which also turns on "direct ingress", and that forces an HTTP proxy onto the head at
        # 127.0.0.1:8000 (the gateway's port) whatever `proxy_location` says. The controller runs
        # on the head and reads this from the head's environment; replicas get it in theirs.
        env.setdefault("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0")
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.update(RAY_CLIENT_ENV)
        env.update(self.env)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray head exited with {self.process.returncode}; see {self.log_path}")
            if port_open("127.0.0.1", self.port):
                # GCS answers before the raylet registers; give the node a moment to join.
                time.sleep(2.0)
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ray head did not listen on {self.address} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        # Ray drains for up to 30 s on SIGTERM; nothing here needs draining, so after a short grace
        # period the whole process group (GCS, raylet, workers) is killed.
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
