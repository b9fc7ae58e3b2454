"""CPU time per process group on this box, from ``/proc`` (Linux), for "who ate the two cores".

``CpuMeter.snapshot()`` reads every process's user + system CPU seconds and names its group from
its command line (``gateway``, ``deployer``, ... for the stack's ``python -m fleet_<service>``;
``replica:<app>`` for a Ray Serve replica, ``serve-controller``, ``raylet``, ``gcs``, ``broker``,
``wrk``, ``bench`` for this process, ``other``). ``CpuMeter.between(before, after, seconds)``
gives each group's cores used over the interval (CPU seconds / wall seconds; 2.0 is the whole
box), so a load cell can say which process spent the CPU its rps was bounded by. CPU seconds,
unlike wall time, are not skewed by what else runs on a shared box; a process that started during
the interval counts from zero, one that ended is lost (its share shows as missing, not as noise).
"""

from __future__ import annotations

import os
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
    return "other"


@dataclass(frozen=True)
class Sample:
    group: str
    cpu_s: float


class CpuMeter:
    """Snapshots of every process's CPU seconds, and the cores each group used between two."""

    @staticmethod
    def available() -> bool:
        return (PROC / "self" / "stat").exists()

    @staticmethod
    def snapshot() -> dict[int, Sample]:
        samples: dict[int, Sample] = {}
        if not CpuMeter.available():
            return samples
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
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
