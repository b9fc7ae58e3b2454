"""Which HTTP stack the gateway should run: the candidates side by side on the hot path, one run.

One embedded stack, the bench model registered once (``deploy_policy="direct"``, the shared pool,
as ``bench/serving.py`` deploys it); the stack's own gateway is stopped and each candidate is started
in its place with the stack's settings by ``bench/gateway_server.py``, which runs the gateway's own
app (``fleet_gateway.app.create_app``) under the candidate's server: each is the whole gateway
(lifespan, a Ray driver per worker, route follower, inference log, batching, fast path), never a
reduced app:

  uvicorn      uvicorn, uvloop + httptools, one process: what ``python -m fleet_gateway serve`` runs
  granian      granian's ASGI interface (lifespan on), uvloop, one worker
  uvicorn-w2   uvicorn's supervisor with 2 worker processes on the port, each a Ray driver
  granian-w2   granian with 2 worker processes on the port, each a Ray driver

Every cell: the same OIP JSON body (one row, ``workload.request_body``) to
``/v2/models/{name}/infer`` with a bearer token, wrk (or the aiohttp fallback) at 1 and 16
connections for ``--duration`` s after a warm-up. ``--rounds`` repeats the candidates, every other
round in reverse order, so drift on a shared box lands on all of them; the report prints each
round, the median over rounds, and each candidate's ratio to ``uvicorn`` (``--baseline``) with the
spread of the per-round ratios, so "beyond noise" can be read off. For each cell it also records the
gateway's CPU (all its processes, from /proc) per request and how busy the box was.

Usage: ``flock /work/wt/bench.lock .venv/bin/python bench/http_stack.py [--rounds 2] [--only ...]``
(``--quick``: 3 s cells, one round, a smoke run). Writes ``bench/results/http-stack[-quick]-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # see bench/serving.py
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import httpx
from harness import BENCH_DIR, child, machine, sigterm_as_interrupt, write_results
from loadgen import run_load, wrk_available
from serving import OIP_INFER, Run, serve_stack
from workload import request_body


@dataclass(frozen=True)
class Candidate:
    name: str
    server: str
    """``gateway_server.py --server``"""
    workers: int
    """``gateway_server.py --workers``"""


CANDIDATES = [
    Candidate("uvicorn", "uvicorn", 1),
    Candidate("granian", "granian", 1),
    Candidate("uvicorn-w2", "uvicorn", 2),
    Candidate("granian-w2", "granian", 2),
]
BY_NAME = {c.name: c for c in CANDIDATES}


# ------------------------------------------------------------------------------ CPU accounting


def _session_pids(sid: int) -> list[int]:
    """Every process in session ``sid`` (a candidate and its workers: started in their own session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after ")": state ppid pgrp session ...
            pids.append(int(entry))
    return pids


def cpu_seconds(sid: int) -> float:
    """User + system CPU seconds of the live processes of session ``sid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _session_pids(sid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def box_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole box since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# ------------------------------------------------------------------------------ candidates


@contextlib.contextmanager
def gateway(
    cand: Candidate,
    stack_env: dict[str, str],
    headers: dict[str, str],
    workdir: Path,
    *,
    start_timeout_s: float,
) -> Iterator[tuple[str, int]]:
    """The candidate as a gateway next to the stack; yields (base URL, session id) once every
    worker answers inference (fresh connections, so each worker is reached)."""
    from fleet_sdk.embedded_broker import free_port
    from fleet_sdk.embedded_ray import RAY_CLIENT_ENV

    port = free_port()
    env = {
        **stack_env,
        **RAY_CLIENT_ENV,
        "FLEET_PORT": str(port),
        "FLEET_HOST": "127.0.0.1",
        # HTTP is measured; and the gRPC endpoint refuses to share its port (no SO_REUSEPORT), so
        # a second worker could not start with it on.
        "FLEET_GRPC_PORT": "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "PYTHONUNBUFFERED": "1",
    }
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    cmd = [sys.executable, str(BENCH_DIR / "gateway_server.py"), "--server", cand.server]
    with child([*cmd, "--workers", str(cand.workers)], workdir / f"{cand.name}.log", env=env) as proc:
        wait_serving(base, headers, proc, start_timeout_s, need=10 * cand.workers)
        print(f"  {cand.name}: serving in {time.monotonic() - t0:.1f}s", flush=True)
        yield base, proc.pid


def wait_serving(base: str, headers: dict[str, str], proc: Any, timeout_s: float, *, need: int) -> None:
    """``need`` inference answers in a row, each on a new connection."""
    deadline = time.monotonic() + timeout_s
    ok, last = 0, "no answer"
    body = request_body()
    headers = {**headers, "Content-Type": "application/json"}
    while ok < need:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({proc.returncode}) before serving")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base} not serving after {timeout_s:.0f}s ({last})")
        try:
            r = httpx.post(base + OIP_INFER, content=body, headers=headers, timeout=5)
            ok = ok + 1 if r.status_code == 200 else 0
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.TransportError as exc:
            ok, last = 0, str(exc)
        if ok == 0:
            time.sleep(0.3)


def measure(
    base: str, sid: int, headers: dict[str, str], connections: list[int], duration_s: float, warmup_s: float
) -> dict[str, dict[str, Any]]:
    url, body = base + OIP_INFER, request_body()
    run_load(url, body, connections=max(connections), duration_s=warmup_s, headers=headers)
    out: dict[str, dict[str, Any]] = {}
    for c in connections:
        cpu0, (busy0, total0) = cpu_seconds(sid), box_busy()
        res = run_load(url, body, connections=c, duration_s=duration_s, headers=headers).as_dict()
        cpu1, (busy1, total1) = cpu_seconds(sid), box_busy()
        res["gateway_cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / max(1, int(res["requests"]))
        res["gateway_cpu_cores"] = (cpu1 - cpu0) / float(res["duration_s"] or duration_s)
        res["box_busy"] = (busy1 - busy0) / max(1, total1 - total0)
        out[str(c)] = res
        print(
            f"    c={c:<3} {res['rps']:8.1f} rps  p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:7.2f} ms  "
            f"errors {res['errors']}  gateway {res['gateway_cpu_cores']:.2f} cores "
            f"({res['gateway_cpu_ms_per_req']:.2f} ms/req)  box {100 * res['box_busy']:.0f}% busy",
            flush=True,
        )
    return out


# ------------------------------------------------------------------------------ report


def summarize(
    rounds: list[dict[str, dict[str, dict[str, Any]]]], baseline: str, connections: list[int]
) -> list[dict[str, Any]]:
    """Per candidate and connection count: median rps/p50/p99 over rounds, and the ratio of its rps
    to the baseline's in each round (same round, so the same box state), with their min and max."""
    names = list(dict.fromkeys(n for r in rounds for n in r))
    rows = []
    for name in names:
        for c in map(str, connections):
            cells = [r[name][c] for r in rounds if c in r.get(name, {})]
            if not cells:
                continue
            ratios = [
                r[name][c]["rps"] / r[baseline][c]["rps"]
                for r in rounds
                if c in r.get(name, {}) and c in r.get(baseline, {}) and r[baseline][c]["rps"]
            ]
            rows.append(
                {
                    "candidate": name,
                    "connections": int(c),
                    "rps_median": statistics.median(x["rps"] for x in cells),
                    "rps_rounds": [round(x["rps"], 1) for x in cells],
                    "p50_ms_median": statistics.median(x["p50_ms"] for x in cells),
                    "p99_ms_median": statistics.median(x["p99_ms"] for x in cells),
                    "gateway_cpu_ms_per_req_median": statistics.median(
                        x["gateway_cpu_ms_per_req"] for x in cells
                    ),
                    "errors": sum(int(x["errors"]) for x in cells),
                    "ratio_vs_baseline_median": statistics.median(ratios) if ratios else None,
                    "ratio_vs_baseline_min": min(ratios) if ratios else None,
                    "ratio_vs_baseline_max": max(ratios) if ratios else None,
                }
            )
    return rows


def print_report(rows: list[dict[str, Any]], baseline: str, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=140)
    table = Table(title=title)
    cols = ("candidate", "conns", "rps (median)", "rps per round", "p50 ms", "p99 ms", "cpu ms/req", "errors")
    for col in (*cols, f"/ {baseline} (min..max)"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in rows:
        ratio = r["ratio_vs_baseline_median"]
        shown = (
            "-"
            if ratio is None
            else f"{ratio:.2f}x ({r['ratio_vs_baseline_min']:.2f}..{r['ratio_vs_baseline_max']:.2f})"
        )
        table.add_row(
            r["candidate"],
            str(r["connections"]),
            f"{r['rps_median']:.1f}",
            " ".join(f"{x:.0f}" for x in r["rps_rounds"]),
            f"{r['p50_ms_median']:.2f}",
            f"{r['p99_ms_median']:.2f}",
            f"{r['gateway_cpu_ms_per_req_median']:.2f}",
            str(r["errors"]),
            shown,
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of warm-up load per candidate start"
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=2, help="times every candidate is started and measured")
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), default=list(BY_NAME))
    parser.add_argument("--baseline", choices=list(BY_NAME), default="uvicorn")
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-up, one round: a smoke run")
    parser.add_argument("--stack-timeout", type=float, default=240.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = min(args.duration, 3.0), min(args.warmup, 1.0), 1
    if args.baseline not in args.only:
        args.only = [args.baseline, *args.only]
    sigterm_as_interrupt()

    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-http-"))
    connections = sorted(args.connections)
    print(f"bench work dir (logs): {workdir}", flush=True)
    started, box = time.time(), machine()
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    errors: dict[str, str] = {}
    order = [c for c in CANDIDATES if c.name in args.only]
    try:
        from fleet_sdk.stack import Stack, terminate

        run = Run(args.duration, args.warmup, connections, False, workdir)
        with serve_stack(args.stack_timeout)(run) as endpoint:
            stack = Stack(workdir / "fleet-home")
            state = stack.state()
            assert state is not None
            own = next(s for s in state.services if s.name == "gateway")
            terminate(own.pid, 15.0)  # the candidates take its place; an idle gateway still costs CPU
            stack_env = {
                **state.env,
                "FLEET_JWT_SECRET": stack.jwt_secret(),
                "FLEET_RATE_LIMIT_RPS": "1000000",
                "FLEET_RATE_LIMIT_BURST": "1000000",
            }
            for i in range(args.rounds):
                this: dict[str, dict[str, dict[str, Any]]] = {}
                rounds.append(this)
                for cand in order if i % 2 == 0 else list(reversed(order)):
                    print(f"[round {i + 1}] {cand.name}  (load {os.getloadavg()[0]:.2f})", flush=True)
                    try:
                        with gateway(
                            cand, stack_env, endpoint.headers, workdir, start_timeout_s=args.stack_timeout
                        ) as (
                            base,
                            sid,
                        ):
                            this[cand.name] = measure(
                                base, sid, endpoint.headers, connections, args.duration, args.warmup
                            )
                    except Exception as exc:
                        errors[f"{cand.name}#{i + 1}"] = f"{type(exc).__name__}: {exc}"
                        print(f"  {cand.name} failed: {str(exc)[:1500]}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; everything started has been stopped", flush=True)
        return 130
    rows = summarize(rounds, args.baseline, connections)
    tool = "wrk" if wrk_available() else "python aiohttp"
    print_report(
        rows, args.baseline, f"Gateway HTTP stack, {args.duration:g}s cells x {args.rounds} rounds ({tool})"
    )
    for key, err in errors.items():
        print(f"failed: {key}: {err}")
    write_results(
        "http_stack",
        "http-stack",
        quick=args.quick,
        out=args.out,
        started=started,
        box=box,
        config={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": connections,
            "rounds": args.rounds,
            "candidates": [c.__dict__ for c in order],
            "baseline": args.baseline,
            "load_tool": "wrk" if wrk_available() else "python-aiohttp",
            "model": "LogisticRegression, 8 float features, 1 row per request (shared pool)",
            "body": json.loads(request_body()),
        },
        summary=rows,
        rounds=rounds,
        errors=errors,
        logs=str(workdir),
    )
    return 1 if errors else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
