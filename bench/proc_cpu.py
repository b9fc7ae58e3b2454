"""CPU time of a bench's own process tree, per part of the stack, from ``/proc`` (Linux only).

A bench starts the stack as its children (services, the broker, Ray and through Ray the Serve
replicas), so walking the tree from the bench's own pid finds exactly this run's processes and
none of another run sharing the box. Each process is named by its command line (a Ray worker's
title, ``ray::ServeReplica:fleet-pool:...``, included); one that names nothing the table knows
takes its parent's name (a server's worker processes). ``usage(before, after, seconds)`` says how
many cores each part used over a cell, and how busy the whole machine was meanwhile (on a shared
box, the difference is other work): the question "which process eats the two cores" in numbers.

Processes that start during a cell count from zero. One that ends is counted only when the bench
itself waited for it (``wrk``, the ``fleet`` CLI): the kernel adds its time to the bench's
children-time, shown as "ended children"; one deeper in the tree that ends during a cell is lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROLES: tuple[tuple[str, str], ...] = (
    ("fleet_gateway", "gateway"),
    ("fleet_deployer", "deployer"),
    ("fleet_monitor", "monitor"),
    ("fleet_registry", "registry"),
    ("fleet_retrainer", "retrainer"),
    ("fleet_sdk.cli", "fleet cli"),
    ("ray::ServeReplica:fleet-pool", "pool replicas"),
    ("ray::ServeReplica:", "dedicated replicas"),
    ("ray::ServeController", "serve controller"),
    ("ray::ProxyActor", "serve proxy"),
    ("gcs_server", "ray gcs"),
    ("raylet", "raylet"),
    ("ray::", "ray workers"),
    ("/ray/", "ray other"),
    ("tansu", "broker"),
    ("wrk", "load generator"),
)
"""Substring of the command line -> part of the stack; the first match wins."""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    started: int
    """Start time in clock ticks since boot: tells a reused pid from the process it had before."""
    cpu_s: float
    children_s: float
    """CPU time of its children that ended and were waited for."""
    cmdline: str


def _read(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cmdline = (
        raw.replace(b"\0", b" ").decode(errors="replace").strip()
        or stat[stat.index("(") + 1 : stat.rindex(")")]
    )
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        started=int(fields[19]),
        cpu_s=(int(fields[11]) + int(fields[12])) / ticks,
        children_s=(int(fields[13]) + int(fields[14])) / ticks,
        cmdline=cmdline,
    )


def tree(root: int | None = None) -> dict[int, Proc]:
    """``root`` (default: this process) and all its descendants."""
    root = os.getpid() if root is None else root
    procs = {p.pid: p for p in (_read(int(d)) for d in os.listdir("/proc") if d.isdigit()) if p is not None}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: dict[int, Proc] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in found:
            found[pid] = procs[pid]
            todo.extend(children.get(pid, []))
    return found


def role_of(proc: Proc, procs: dict[int, Proc], root: int) -> str:
    if proc.pid == root:
        return "bench"
    for needle, role in ROLES:
        if needle in proc.cmdline:
            return role
    parent = procs.get(proc.ppid)
    return role_of(parent, procs, root) if parent is not None else "other"


Snapshot = dict[tuple[int, int], tuple[str, float]]


BOX = "whole box"
"""The key of every CPU's busy time (``/proc/stat``): this run's tree and whatever else runs."""


def box_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (all CPUs, idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def snapshot(root: int | None = None) -> Snapshot:
    """(pid, start time) -> (part of the stack, CPU seconds so far), over the tree from ``root``,
    plus the whole machine's busy time (so a cell shows what other work took meanwhile)."""
    root = os.getpid() if root is None else root
    procs = tree(root)
    snap = {(p.pid, p.started): (role_of(p, procs, root), p.cpu_s) for p in procs.values()}
    if root in procs:
        snap[(-1, 0)] = ("ended children", procs[root].children_s)
    snap[(-2, 0)] = (BOX, box_busy_s())
    return snap


def usage(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
    """Cores each part used between two snapshots ``seconds`` apart, busiest first."""
    by_role: dict[str, float] = {}
    for key, (role, cpu) in after.items():
        if role == BOX:
            continue
        spent = cpu - before.get(key, (role, 0.0))[1]
        by_role[role] = by_role.get(role, 0.0) + spent
    cores = {
        role: round(cpu / seconds, 3)
        for role, cpu in sorted(by_role.items(), key=lambda kv: -kv[1])
        if cpu > 0 and seconds > 0
    }
    if (-2, 0) in before and (-2, 0) in after and seconds > 0:
        cores[BOX] = round((after[(-2, 0)][1] - before[(-2, 0)][1]) / seconds, 3)
    return cores


def describe(cores: dict[str, float], top: int = 8) -> str:
    """``gateway 0.81, pool replicas 0.42, ... (this run 1.52 of the box's 1.97 cores busy)``: the
    busiest ``top`` parts of this run, its total, and how busy the whole machine was."""
    ours = {role: c for role, c in cores.items() if role != BOX}
    shown = ", ".join(f"{role} {c:.2f}" for role, c in list(ours.items())[:top])
    box = f" of the box's {cores[BOX]:.2f}" if BOX in cores else ""
    return f"{shown} (this run {sum(ours.values()):.2f}{box} cores busy)"
