"""A local Ray head node as a child process, for the embedded stack and the tests.

The head is started with ``ray start --head --block`` on free loopback ports so several stacks
(or a stack and the test suite) can run side by side; stopping the child process tears the whole
local cluster down. Deployer and gateway connect to it with ``ray.init(address=...)``, so serving
survives a deployer restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleet_sdk.embedded_broker import free_port, port_open

log = logging.getLogger(__name__)

STARTED_MARK = b"Ray runtime started."
"""What ``ray start`` prints once the head's GCS and raylet are both up (before it blocks)."""

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
        self._port_given = port is not None
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

    def start(self, timeout_s: float = 90.0, attempts: int = 3) -> None:
        """Start the head and return once ``ray start`` reports the node up (GCS *and* raylet).

        The ports are picked free just before the start, so another process can take one first
        (the raylet then dies with its agent: "Address already in use"); an attempt that fails so
        is retried on fresh ports, up to ``attempts`` times."""
        env = dict(os.environ)
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # ...which also turns on "direct ingress", and that forces an HTTP proxy onto the head at
        # 127.0.0.1:8000 (the gateway's port) whatever `proxy_location` says. The controller runs
        # on the head and reads this from the head's environment; replicas get it in theirs.
        env.setdefault("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0")
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.update(RAY_CLIENT_ENV)
        env.update(self.env)
        log_path = self.log_path or self.temp_dir / "ray-head.log"
        for attempt in range(1, attempts + 1):
            offset = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as out:
                self.process = subprocess.Popen(
                    self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            failure = self._wait_started(log_path, offset, timeout_s)
            if failure is None:
                return
            self.stop()
            if attempt == attempts:
                raise RuntimeError(f"ray head did not start ({failure}); see {log_path}")
            log.warning("ray head did not start (%s); retrying on fresh ports", failure)
            if not self._port_given:
                self.port = free_port()

    def _wait_started(self, log_path: Path, offset: int, timeout_s: float) -> str | None:
        """None once the head's output says the node started and its GCS answers; else why not."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(log_path, "rb") as log_file:
                log_file.seek(offset)
                started = STARTED_MARK in log_file.read()
            if started and port_open("127.0.0.1", self.port):
                return None
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}"
            time.sleep(0.2)
        return f"not up within {timeout_s:.0f}s"

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
