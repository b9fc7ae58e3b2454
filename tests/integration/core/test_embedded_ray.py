"""The embedded Ray head (``fleet_sdk.embedded_ray``): it returns only once the node is up, and a
start that loses one of its picked ports to another process is retried on fresh ones."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fleet_sdk.embedded_ray import EmbeddedRay

# The failed attempt takes Ray's own ~30 s node start timeout: run with the extended tests.
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.extended]


class TakenMetricsPortOnce(EmbeddedRay):
    """The first start is given a metrics port another process already listens on."""

    def __init__(self, taken: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.taken = taken
        self.commands: list[list[str]] = []

    def command(self) -> list[str]:
        cmd = super().command()
        if not self.commands:
            cmd = [
                f"--metrics-export-port={self.taken}" if a.startswith("--metrics-export-port=") else a
                for a in cmd
            ]
        self.commands.append(cmd)
        return cmd


def test_a_head_that_loses_a_port_is_started_again_on_fresh_ones(tmp_path: Path) -> None:
    # CI saw this: the dashboard agent could not bind its metrics port ("Address already in use"),
    # the raylet died with it, and the head looked started because its GCS port answered.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        head = TakenMetricsPortOnce(squatter.getsockname()[1], log_path=tmp_path / "head.log", num_cpus=1)
        try:
            head.start(timeout_s=90)
            assert len(head.commands) == 2
            assert head.process is not None and head.process.poll() is None
            assert f"--metrics-export-port={squatter.getsockname()[1]}" in head.commands[0]
            assert f"--metrics-export-port={squatter.getsockname()[1]}" not in head.commands[1]
            # The first attempt never reported the node up; the second did.
            assert (tmp_path / "head.log").read_text(errors="replace").count("Ray runtime started.") == 1
        finally:
            head.stop()
