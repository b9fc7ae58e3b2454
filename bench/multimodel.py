"""Many small models on one box: the shared multiplexed pool under registration and traffic.

Registers ``--models`` (default 200; ``--quick``: 30) tiny scikit-learn models with
``deploy_policy="direct"`` through the embedded stack, so they all land in the shared
``serve.multiplexed`` pool, then measures:

  * registration + deploy: wall time per model (register call, and until the deployer says ``ready``)
  * cold vs warm: each model's first request through the gateway (loads it into a pool replica)
    against the request right after it
  * traffic spread over all models, uniform and Zipf-skewed (s=1.1), at 16 connections: rps, p50, p99
  * memory: RSS of the pool replica processes (psutil) with one model loaded and with all of them,
    models loaded per replica (the pool's ``stats``), and the memory each extra model costs

Usage: ``.venv/bin/python bench/multimodel.py [--models 200] [--quick] [--duration 10]``.
Writes ``bench/results/multimodel-<date>.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
# A ~/.ray/auth_token left by any local `ray.init()` turns token auth on for every new head started
# without RAY_AUTH_MODE, and drivers that connect by address then fail; everything here is loopback.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Under `uv run` (the Makefile) Ray's uv hook would ship the cwd to every worker as a runtime env and
# run them with `uv run` (from bench/ it refuses outright: pyproject.toml is not in the working_dir);
# the bench's Ray heads already run this venv, so drivers here and in children only attach.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import httpx
import numpy as np
import pandas as pd
from harness import RESULTS_DIR, machine, run_driver, run_guarded, sigterm_as_interrupt
from loadgen import run_load, wrk_available

N_FEATURES = 4
FEATURES = [f"x{i}" for i in range(N_FEATURES)]
ZIPF_S = 1.1


def tiny_model(i: int) -> tuple[Any, pd.DataFrame, np.ndarray]:
    """A logistic regression over 4 features and 200 rows; each model its own seed and weights."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(i)
    X = pd.DataFrame(rng.normal(size=(200, N_FEATURES)), columns=FEATURES)
    y = (X.to_numpy() @ rng.normal(size=N_FEATURES) > 0).astype(int)
    return LogisticRegression().fit(X, y), X, y


def row_body() -> str:
    return json.dumps({"inputs": {f: 0.1 * (k + 1) for k, f in enumerate(FEATURES)}})


def rss_bytes(pid: int) -> int:
    """Resident set size of a process: psutil when installed, else /proc (Linux)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise OSError(f"no VmRSS for pid {pid}") from None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error as exc:
        raise OSError(str(exc)) from exc


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def dist(values: list[float]) -> dict[str, float | None]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


def zipf_sequence(n_models: int, length: int, s: float, seed: int = 1) -> list[int]:
    weights = np.array([1 / (k + 1) ** s for k in range(n_models)])
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_models)  # which models are popular is arbitrary
    return [int(order[k]) for k in rng.choice(n_models, size=length, p=weights / weights.sum())]


def uniform_sequence(n_models: int, length: int, seed: int = 2) -> list[int]:
    rng = random.Random(seed)
    seq: list[int] = []
    while len(seq) < length:
        block = list(range(n_models))
        rng.shuffle(block)
        seq += block
    return seq[:length]


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.out: dict[str, Any] = {}
        self.notes: list[str] = []
        self.names = [f"tiny-{i:04d}" for i in range(args.models)]

    # ------------------------------------------------------------------ pool introspection

    def pool_stats(self, ray_address: str) -> list[dict[str, Any]]:
        from fleet_core.serving import POOL_APP, POOL_DEPLOYMENT

        res = run_driver(
            ["pool-stats", "--address", ray_address, "--app", POOL_APP, "--deployment", POOL_DEPLOYMENT],
            self.workdir / "pool-stats.log",
            timeout_s=120,
        )
        replicas: list[dict[str, Any]] = res["replicas"]  # type: ignore[assignment]
        for r in replicas:
            r["rss_mb"] = None
            with contextlib.suppress(OSError, TypeError, ValueError):
                r["rss_mb"] = rss_bytes(int(r["pid"])) / 2**20
            r["n_loaded"] = len(r.get("loaded", []))
        return replicas

    def memory_snapshot(self, label: str, ray_address: str) -> dict[str, Any]:
        replicas = self.pool_stats(ray_address)
        snap = {
            "replicas": len(replicas),
            "rss_mb_total": sum(r["rss_mb"] or 0 for r in replicas),
            "rss_mb_each": [round(r["rss_mb"] or 0, 1) for r in replicas],
            "models_loaded_each": [r["n_loaded"] for r in replicas],
            "unloads_each": [r.get("unloads") for r in replicas],
        }
        print(
            f"  memory [{label}]: {snap['replicas']} pool replica(s), RSS {snap['rss_mb_each']} MB, "
            f"models loaded {snap['models_loaded_each']}",
            flush=True,
        )
        return snap

    # ------------------------------------------------------------------ phases

    def wait_ready(self, client: Any, names: list[str]) -> None:
        wanted = set(names)
        deadline = time.monotonic() + self.args.deploy_timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {d["model"]: d["state"] for d in client.deployments() if d["model"] in wanted}
            failed = [m for m, s in states.items() if s == "failed"]
            if failed:
                raise RuntimeError(f"deploy failed for {failed[:5]} ({len(failed)} in all)")
            if len(states) == len(wanted) and all(s == "ready" for s in states.values()):
                return
            time.sleep(1.0)
        missing = sorted(wanted - {m for m, s in states.items() if s == "ready"})
        raise TimeoutError(
            f"{len(missing)} deployments not ready after {self.args.deploy_timeout:.0f}s: {missing[:5]}"
        )

    def cold_vs_warm(self, gateway: str, token: str) -> None:
        """Each model's first request (loads it) and the one right after (warm)."""
        cold, warm, failures = [], [], 0
        names = self.names
        if self.args.cold_sample and self.args.cold_sample < len(names):
            names = random.Random(3).sample(names, self.args.cold_sample)
        body = row_body()
        hdrs = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=gateway, headers=hdrs, timeout=60) as http:
            for name in names:
                for bucket in (cold, warm):
                    t0 = time.perf_counter()
                    r = http.post(f"/v2/models/{name}/infer", content=body)
                    if r.status_code >= 300:
                        failures += 1
                        if failures <= 3:
                            self.notes.append(f"{name}: {r.status_code} {r.text[:200]}")
                        break
                    bucket.append((time.perf_counter() - t0) * 1000)
        self.out["cold_vs_warm_ms"] = {
            "cold_first_request": dist(cold),
            "warm_next_request": dist(warm),
            "failures": failures,
        }
        c, w = (
            self.out["cold_vs_warm_ms"]["cold_first_request"],
            self.out["cold_vs_warm_ms"]["warm_next_request"],
        )
        print(
            f"  cold first request p50 {c['p50']:.1f} ms p99 {c['p99']:.1f} ms; "
            f"warm p50 {w['p50']:.1f} ms p99 {w['p99']:.1f} ms (n={c['n']}, failures {failures})",
            flush=True,
        )

    def traffic(self, gateway: str, token: str) -> None:
        paths = [f"/v2/models/{n}/infer" for n in self.names]
        length = 20_000
        patterns = {
            "uniform": uniform_sequence(len(paths), length),
            "zipf": zipf_sequence(len(paths), length, ZIPF_S),
        }
        self.out.setdefault("traffic", {})
        for label, seq in patterns.items():
            top10 = sum(n for _, n in Counter(seq).most_common(10)) / len(seq)
            run_load(
                gateway,
                row_body(),
                connections=self.args.connections,
                duration_s=self.args.warmup,
                headers={"Authorization": f"Bearer {token}"},
                paths=paths,
                sequence=seq,
                force_python=self.args.python_load,
            )
            res = run_load(
                gateway,
                row_body(),
                connections=self.args.connections,
                duration_s=self.args.duration,
                headers={"Authorization": f"Bearer {token}"},
                paths=paths,
                sequence=seq,
                force_python=self.args.python_load,
            ).as_dict()
            res["share_of_top10_models"] = round(top10, 3)
            self.out["traffic"][label] = res
            print(
                f"  {label:<8} c={self.args.connections} {res['rps']:8.1f} rps  p50 {res['p50_ms']:7.2f} ms  "
                f"p99 {res['p99_ms']:7.2f} ms  errors {res['errors']} (top-10 models get {top10:.0%})",
                flush=True,
            )
            if res["errors"]:
                self.notes.append(f"{label}: {res['errors']} failed requests of {res['requests']}")

    def single_model_traffic(self, gateway: str, token: str) -> None:
        """One model under the same load, for the rps the spread traffic is compared with."""
        url = f"{gateway}/v2/models/{self.names[0]}/infer"
        hdr = {"Authorization": f"Bearer {token}"}
        run_load(
            url,
            row_body(),
            connections=self.args.connections,
            duration_s=self.args.warmup,
            headers=hdr,
            force_python=self.args.python_load,
        )
        res = run_load(
            url,
            row_body(),
            connections=self.args.connections,
            duration_s=self.args.duration,
            headers=hdr,
            force_python=self.args.python_load,
        ).as_dict()
        self.out.setdefault("traffic", {})["single-model"] = res
        print(
            f"  single   c={self.args.connections} {res['rps']:8.1f} rps  p50 {res['p50_ms']:7.2f} ms  "
            f"p99 {res['p99_ms']:7.2f} ms  errors {res['errors']}",
            flush=True,
        )

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        from fleet_sdk import Client
        from fleet_sdk.config import ClientConfig
        from fleet_sdk.stack import Stack

        home = self.workdir / "fleet-home"
        stack = Stack(home)
        # The pool is what this bench measures: the gateway keeps no copy of its own (bench/fleet.py
        # runs with the gateway's default and reports both).
        env = {
            "FLEET_RATE_LIMIT_RPS": "1000000",
            "FLEET_RATE_LIMIT_BURST": "1000000",
            "FLEET_LOCAL_MODELS_MB": "0",
        }
        if self.args.max_models_per_replica:
            env["FLEET_POOL_MAX_MODELS_PER_REPLICA"] = str(self.args.max_models_per_replica)
        t0 = time.monotonic()
        try:
            state = stack.start(
                broker_port=0,
                ports={"registry": 0, "deployer": 0, "gateway": 0, "monitor": 0, "retrainer": 0},
                detach=True,
                env=env,
                timeout_s=self.args.stack_timeout,
                log=lambda m: print("  " + m),
            )
            self.out["stack_start_s"] = time.monotonic() - t0
            print(f"  stack up in {self.out['stack_start_s']:.1f}s (logs: {stack.logs})", flush=True)
            assert state.ray is not None
            ray_address = state.ray.url.removeprefix("ray://")
            cfg = ClientConfig.load(home / "config")
            gateway = cfg.urls["gateway_url"]
            assert cfg.token
            with Client(
                cfg.registry_url,
                cfg.token,
                gateway_url=gateway,
                deployer_url=cfg.urls["deployer_url"],
                config=cfg,
            ) as client:
                self.register_all_with_baseline(client, gateway, cfg.token, ray_address)
                self.cold_vs_warm(gateway, cfg.token)
                self.out["memory_after_cold_pass"] = self.memory_snapshot(
                    "after first request to each", ray_address
                )
                self.single_model_traffic(gateway, cfg.token)
                self.traffic(gateway, cfg.token)
                self.out["memory_after_traffic"] = self.memory_snapshot("after traffic", ray_address)
        finally:
            stopped = stack.stop()
            print(f"  stack stopped ({', '.join(stopped) or 'nothing running'})", flush=True)

    def register_all_with_baseline(self, client: Any, gateway: str, token: str, ray_address: str) -> None:
        # The single-model baseline: the pool replica right after model 0's first request.
        model, X, y = tiny_model(0)
        t0 = time.perf_counter()
        client.register_sklearn(
            self.names[0], model, X, y, team="bench", deploy_policy="direct", example_rows=1
        )
        self.wait_ready(client, self.names[:1])
        first_ready = time.perf_counter() - t0
        hdrs = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=gateway, headers=hdrs, timeout=60) as http:
            t1 = time.perf_counter()
            r = http.post(f"/v2/models/{self.names[0]}/infer", content=row_body())
            r.raise_for_status()
            first_call = (time.perf_counter() - t1) * 1000
        self.out["first_model"] = {"register_until_ready_s": first_ready, "first_request_ms": first_call}
        print(
            f"  first model: registered+ready in {first_ready:.1f}s, first request {first_call:.0f} ms",
            flush=True,
        )
        self.out["memory_single_model"] = self.memory_snapshot("one model", ray_address)
        self.names_rest_registration(client)

    def names_rest_registration(self, client: Any) -> None:
        def register(i: int) -> float:
            model, X, y = tiny_model(i)
            t0 = time.perf_counter()
            client.register_sklearn(
                self.names[i], model, X, y, team="bench", deploy_policy="direct", example_rows=1
            )
            return time.perf_counter() - t0

        register_s: list[float] = []
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(self.args.register_workers) as pool:
            for k, s in enumerate(pool.map(register, range(1, len(self.names))), start=2):
                register_s.append(s)
                if k % 25 == 0:
                    print(f"  registered {k}/{len(self.names)} ({time.perf_counter() - t0:.0f}s)", flush=True)
        registered_at = time.perf_counter()
        self.wait_ready(client, self.names)
        ready_at = time.perf_counter()
        n = len(self.names) - 1
        self.out["registration"] = {
            "register_call_s": dist(register_s),
            "workers": self.args.register_workers,
            "models": n,
            "wall_register_s": registered_at - t0,
            "wall_until_all_ready_s": ready_at - t0,
            "per_model_wall_s": (ready_at - t0) / n if n else None,
        }
        print(
            f"  {n} more models registered in {registered_at - t0:.1f}s, all ready after "
            f"{ready_at - t0:.1f}s ({(ready_at - t0) / max(n, 1):.2f} s/model wall, "
            f"{self.args.register_workers} client threads)",
            flush=True,
        )


def derived(out: dict[str, Any], n_models: int) -> dict[str, Any]:
    """Ratios: memory per extra model, spread vs single-model throughput, cold vs warm."""
    d: dict[str, Any] = {}
    one = out.get("memory_single_model")
    for key in ("memory_after_cold_pass", "memory_after_traffic"):
        many = out.get(key)
        if not one or not many or not one["replicas"]:
            continue
        single_rss = one["rss_mb_total"] / one["replicas"]
        loaded = sum(many["models_loaded_each"])
        # Memory per extra model from replicas that hold models; one that just scaled up and holds
        # none says nothing about model size.
        holding = [
            (rss, n) for rss, n in zip(many["rss_mb_each"], many["models_loaded_each"], strict=True) if n > 0
        ]
        extra_models = sum(n - 1 for _, n in holding)
        d[key] = {
            "single_model_replica_rss_mb": single_rss,
            "pool_rss_mb_total": many["rss_mb_total"],
            "pool_replicas": many["replicas"],
            "models_loaded_total": loaded,
            "mb_per_extra_model": sum(rss - single_rss for rss, _ in holding) / extra_models
            if extra_models > 0
            else None,
            "pool_rss_vs_one_replica_per_model": many["rss_mb_total"] / (n_models * single_rss),
        }
    t = out.get("traffic", {})
    if "single-model" in t:
        for label in ("uniform", "zipf"):
            if label in t and t["single-model"]["rps"]:
                d[f"{label}_rps_vs_single_model"] = t[label]["rps"] / t["single-model"]["rps"]
    cw = out.get("cold_vs_warm_ms")
    if cw and cw["warm_next_request"]["p50"]:
        d["cold_p50_over_warm_p50"] = cw["cold_first_request"]["p50"] / cw["warm_next_request"]["p50"]
    return d


def print_report(out: dict[str, Any], d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"Multi-model pool: {out['config']['models']} models")
    t.add_column("measure")
    t.add_column("value", justify="right")
    reg = out.get("registration")
    if reg:
        t.add_row(
            "register call p50 / p99 (s)",
            f"{reg['register_call_s']['p50']:.2f} / {reg['register_call_s']['p99']:.2f}",
        )
        t.add_row("register+deploy wall per model (s)", f"{reg['per_model_wall_s']:.2f}")
    cw = out.get("cold_vs_warm_ms")
    if cw:
        c, w = cw["cold_first_request"], cw["warm_next_request"]
        t.add_row("cold first request p50 / p99 (ms)", f"{c['p50']:.1f} / {c['p99']:.1f}")
        t.add_row("warm next request p50 / p99 (ms)", f"{w['p50']:.1f} / {w['p99']:.1f}")
    for label, res in out.get("traffic", {}).items():
        t.add_row(
            f"{label} traffic rps / p50 / p99 (ms)",
            f"{res['rps']:.0f} / {res['p50_ms']:.1f} / {res['p99_ms']:.1f}",
        )
    for key in ("memory_single_model", "memory_after_cold_pass", "memory_after_traffic"):
        m = out.get(key)
        if m:
            t.add_row(f"{key}: RSS MB each / loaded each", f"{m['rss_mb_each']} / {m['models_loaded_each']}")
    console.print(t)
    r = Table(title="Ratios")
    r.add_column("ratio")
    r.add_column("value", justify="right")
    for k, v in d.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                r.add_row(f"{k}.{kk}", "-" if vv is None else f"{vv:.3g}")
        else:
            r.add_row(k, f"{v:.3g}")
    console.print(r)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="30 models, 5 s cells: a smoke run")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--register-workers", type=int, default=4)
    parser.add_argument(
        "--cold-sample", type=int, default=0, help="cold/warm pass over this many models (0: all)"
    )
    parser.add_argument(
        "--max-models-per-replica",
        type=int,
        default=0,
        help="FLEET_POOL_MAX_MODELS_PER_REPLICA for the stack (0: the deployer's default)",
    )
    parser.add_argument("--deploy-timeout", type=float, default=900.0)
    parser.add_argument("--stack-timeout", type=float, default=240.0)
    parser.add_argument("--python-load", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.models, args.duration, args.warmup = 30, min(args.duration, 5.0), min(args.warmup, 2.0)
    sigterm_as_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-mm-"))
    print(f"bench work dir (logs): {workdir}", flush=True)
    bench = Bench(args, workdir)
    outcome = run_guarded(bench.run, workdir, "interrupted; everything started has been stopped")
    if outcome is None:
        return 130
    started, error = outcome
    doc: dict[str, Any] = {
        "bench": "multimodel",
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
        "config": {
            "models": args.models,
            "duration_s": args.duration,
            "connections": args.connections,
            "register_workers": args.register_workers,
            "zipf_s": ZIPF_S,
            "max_models_per_replica": args.max_models_per_replica or "deployer default",
            "load_tool": "wrk" if wrk_available() and not args.python_load else "python-aiohttp",
            "model": "LogisticRegression, 4 float features, 200 training rows, 1 row per request",
        },
        **bench.out,
    }
    doc["ratios"] = derived(bench.out, args.models)
    doc["notes"], doc["error"], doc["logs"] = bench.notes, error, str(workdir)
    if bench.out:
        print_report(doc, doc["ratios"])
    for note in bench.notes:
        print(f"note: {note}")
    out = (
        args.out
        or RESULTS_DIR / f"multimodel-{'quick-' if args.quick else ''}{dt.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
