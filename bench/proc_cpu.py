"""CPU time per process group of one benchmark run, from ``/proc`` (Linux): "who ate the two cores".

The bench marks its run with ``mark_run()`` (an environment variable every process it starts
inherits: the stack's services, the Ray head and every worker the raylet spawns, the broker, wrk),
so other work on a shared box is left out. ``CpuMeter.snapshot()`` reads each marked process's
user + system CPU seconds and names its group from its command line (``gateway``, ``deployer``,
... for ``python -m fleet_<service>``; ``replica:<app>`` for a Ray Serve replica,
``serve-controller``, ``raylet``, ``gcs``, ``broker``, ``wrk``, ``bench`` for this process,
``other:<program>`` for the rest). ``CpuMeter.between(before, after, seconds)`` gives each group's
cores used over the interval (CPU seconds / wall seconds; 2.0 is the whole box). CPU seconds,
unlike wall time, are not skewed by what else runs on the box; a process that started during the
interval counts from zero, one that ended is lost.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SERVICES = ("gateway", "deployer", "registry", "monitor", "retrainer")


def group_of(cmdline: str, pid: int) -> str:
    if pid == os.getpid():
        return "bench"
    for service in SERVICES:
        if f"-m fleet_{service}" in cmdline:
            return service
    if "ray::ServeReplica:" in cmdline:
        app = cmdline.split("ray::ServeReplica:", 1)[1].split(":", 1)[0].split()[0]
        return f"replica:{app}"
    if "ray::ServeController" in cmdline:
        return "serve-controller"
    if "ray::ProxyActor" in cmdline:
        return "serve-proxy"
    if "raylet" in cmdline:
        return "raylet"
    if "gcs_server" in cmdline:
        return "gcs"
    if "ray::" in cmdline or "/ray/" in cmdline:
        return "ray-other"
    if "tansu" in cmdline:
        return "broker"
    if cmdline.startswith("wrk ") or "/wrk " in cmdline:
        return "wrk"
    return f"other:{_program(cmdline)}"


def _program(cmdline: str) -> str:
    """A short name for an unrecognised process: its program, or the script or module a Python
    interpreter runs (``other:pytest``, ``other:agent.py``)."""
    args = cmdline.split()
    name = Path(args[0]).name if args else "?"
    if name.startswith("python"):
        rest = iter(args[1:])
        for arg in rest:
            if arg == "-m":
                return next(rest, name)
            if not arg.startswith("-"):
                return Path(arg).name
    return name


@dataclass(frozen=True)
class Sample:
    group: str
    cpu_s: float


MARK = "FLEET_BENCH_RUN"


def mark_run() -> str:
    """Mark this process (and all it starts from now on) as this run's; returns the mark."""
    os.environ.setdefault(MARK, uuid.uuid4().hex)
    return os.environ[MARK]


class CpuMeter:
    """Snapshots of the run's processes' CPU seconds, and the cores each group used between two."""

    @staticmethod
    def available() -> bool:
        return (PROC / "self" / "stat").exists()

    @staticmethod
    def snapshot() -> dict[int, Sample]:
        samples: dict[int, Sample] = {}
        mark = os.environ.get(MARK)
        if not CpuMeter.available() or mark is None:
            return samples
        needle = f"{MARK}={mark}".encode()
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                if pid != os.getpid() and needle not in (entry / "environ").read_bytes():
                    continue
                stat = (entry / "stat").read_text()
                raw = (entry / "cmdline").read_bytes()
                cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:  # ended meanwhile, or not ours to read
                continue
            # The command name (field 2) is in parentheses and may hold spaces: split after it.
            fields = stat.rsplit(")", 1)[1].split()
            utime, stime = int(fields[11]), int(fields[12])
            if not cmdline:  # a kernel thread
                continue
            samples[pid] = Sample(group_of(cmdline, pid), (utime + stime) / TICKS)
        return samples

    @staticmethod
    def between(before: dict[int, Sample], after: dict[int, Sample], seconds: float) -> dict[str, float]:
        """Cores used per group over ``seconds`` (highest first), groups under 0.01 dropped."""
        used: dict[str, float] = defaultdict(float)
        for pid, sample in after.items():
            start = before.get(pid)
            spent = sample.cpu_s - (start.cpu_s if start is not None and start.group == sample.group else 0.0)
            used[sample.group] += max(0.0, spent)
        cores = {g: round(s / seconds, 3) for g, s in used.items() if seconds > 0 and s / seconds >= 0.01}
        return dict(sorted(cores.items(), key=lambda kv: -kv[1]))
