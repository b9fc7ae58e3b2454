"""Ray processes on this machine, seen from outside Ray."""

from __future__ import annotations

from pathlib import Path


def raylet_running(port: int) -> bool:
    """Whether a raylet with this node-manager port is still alive on this machine."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"raylet") for a in args[:1]) and f"--node_manager_port={port}".encode() in args:
            return True
    return False
