"""Where the shared pool's models land, with Ray Serve's own multiplexed routing and with ModelFleet's
rendezvous placement (``fleet_core.placement``, ADR 0027), measured in the same run.

For each placement and each replica count (``--replicas``, default 2 and 4) a pool of ``--models``
small models (default 300; ``--quick``: 60; logistic regressions, every tenth a 50-tree random
forest) is deployed with that many fixed replicas
and a cache large enough never to evict, then:

  * uniform: every model is called ``--passes`` times (8 connections); then each replica's
    ``stats()`` says which models it holds: replicas per model (mean, max), models per replica;
  * hot: one forest alone at ``--hot-connections`` (16) for ``--duration`` seconds: rps, and the
    share of its calls each replica answered (``served`` in ``stats()``);
  * autoscale: a pool of 1..``max(--replicas)`` replicas (target 2 ongoing requests) under Zipf
    traffic (s = 1.1) at 16 connections for ``--autoscale-s`` seconds: replicas reached and the
    share of calls answered by replicas other than the busiest.

Usage: ``.venv/bin/python bench/pool_spread.py [--quick] [--models 300] [--replicas 2 4]``.
Writes ``bench/results/pool-spread-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Under `uv run` (the Makefile) Ray's uv hook would ship the cwd to every worker as a runtime env and
# run them with `uv run` (from bench/ it refuses outright: pyproject.toml is not in the working_dir);
# the bench's Ray heads already run this venv, so drivers here and in children only attach.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import numpy as np
import pandas as pd
from harness import RESULTS_DIR, machine, sigterm_as_interrupt

N_FEATURES = 4
FEATURES = [f"x{i}" for i in range(N_FEATURES)]
ZIPF_S = 1.1
FOREST_EVERY = 10
ROWS = [{f: 0.1 * (k + 1) for k, f in enumerate(FEATURES)}]


def build_specs(directory: Path, n: int) -> list[Any]:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from fleet_core.serving import ModelSpec
    from fleet_sdk.sklearn import infer_signature

    specs = []
    for i in range(n):
        rng = np.random.default_rng(i)
        X = pd.DataFrame(rng.normal(size=(200, N_FEATURES)), columns=FEATURES)
        y = (X.to_numpy() @ rng.normal(size=N_FEATURES) > 0).astype(int)
        # Every tenth model (the hot one, m0000, included) is a 50-tree forest: ~3 ms a call, so
        # one replica saturates at a few hundred calls a second, below what a driver can send.
        est = (
            RandomForestClassifier(n_estimators=50, random_state=i).fit(X, y)
            if i % FOREST_EVERY == 0
            else LogisticRegression().fit(X, y)
        )
        data = sio.dumps(est)
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        path = directory / sha / "model.skops"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        specs.append(
            ModelSpec(
                model=f"m{i:04d}",
                version=1,
                team="bench",
                flavor="sklearn",
                task="classification",
                artifact_uri=path.as_uri(),
                sha256=sha,
                size_bytes=len(data),
                signature=infer_signature(X, est),
            )
        )
    return specs


async def all_stats(handle: Any, replicas: int) -> dict[str, Any]:
    """Each replica's ``stats()``: calls without a model key go to any replica, so ask until all
    ``replicas`` have answered (or 200 tries)."""
    seen: dict[str, Any] = {}
    for _ in range(200):
        stats = await handle.stats.remote()
        seen[stats.replica_id] = stats
        if len(seen) >= replicas:
            break
    return seen


async def drive(
    handle: Any,
    keys: list[str],
    connections: int,
    *,
    duration_s: float | None = None,
    weights: list[float] | None = None,
) -> dict[str, Any]:
    """``connections`` loops of calls: each of ``keys`` once, or drawn by ``weights`` (else the first)
    for ``duration_s``. Counts failures; returns rps and the call count."""
    failures: Counter[str] = Counter()
    done = 0
    queue = list(keys)
    deadline = time.monotonic() + (duration_s or 0)
    rng = random.Random(7)

    async def loop() -> None:
        nonlocal done
        while True:
            if duration_s is None:
                if not queue:
                    return
                key = queue.pop()
            else:
                if time.monotonic() >= deadline:
                    return
                key = rng.choices(keys, weights)[0] if weights else keys[0]
            try:
                await handle.options(multiplexed_model_id=key).predict.remote(ROWS)
                done += 1
            except Exception as exc:
                failures[type(exc).__name__] += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(connections)))
    wall = time.monotonic() - started
    return {"calls": done, "failures": dict(failures), "rps": round(done / wall, 1), "wall_s": round(wall, 2)}


def placement_summary(stats: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    holders: Counter[str] = Counter()
    for s in stats.values():
        for m in s.loaded:
            holders[m.key] += 1
    per_model = [holders[k] for k in keys]
    return {
        "replicas_answered": len(stats),
        "replicas_per_model_mean": round(sum(per_model) / len(per_model), 3),
        "replicas_per_model_max": max(per_model),
        "models_on_1_replica": sum(1 for c in per_model if c == 1),
        "models_per_replica": sorted(len(s.loaded) for s in stats.values()),
    }


def served_shares(stats: dict[str, Any], key: str, before: dict[str, int]) -> list[float]:
    counts = []
    for rid, s in stats.items():
        n = next((m.served for m in s.loaded if m.key == key), 0)
        counts.append(n - before.get(rid, 0))
    total = sum(counts) or 1
    return sorted((round(c / total, 3) for c in counts), reverse=True)


def served_of(stats: dict[str, Any], key: str) -> dict[str, int]:
    return {rid: next((m.served for m in s.loaded if m.key == key), 0) for rid, s in stats.items()}


async def measure(
    control: Any,
    specs: list[Any],
    placement: str,
    replicas: int,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    from fleet_core.serving import POOL_DEPLOYMENT, Placement, PoolConfig, PoolSizing

    keys = [s.key for s in specs]
    config = PoolConfig(models={s.key: s for s in specs}, idle_unload_s=3600)
    sizing = PoolSizing(
        min_replicas=replicas,
        max_replicas=replicas,
        num_cpus=0.1,
        max_models_per_replica=len(specs) + 8,
        placement=placement,  # type: ignore[arg-type]
    )
    app = f"spread-{placement}-{replicas}-{uuid.uuid4().hex[:4]}"
    await asyncio.to_thread(control.apply_pool, config, sizing, env, app_name=app)
    try:
        handle = control.handle(Placement(kind="pool", app=app, deployment=POOL_DEPLOYMENT))
        uniform = await drive(handle, keys * args.passes, 8)
        stats = await all_stats(handle, replicas)
        result: dict[str, Any] = {"uniform": uniform, "placement": placement_summary(stats, keys)}
        hot = keys[0]
        before = served_of(stats, hot)
        hot_run = await drive(handle, [hot], args.hot_connections, duration_s=args.duration)
        stats = await all_stats(handle, replicas)
        shares = served_shares(stats, hot, before)
        result["hot"] = {
            **hot_run,
            "shares_by_replica": shares,
            "replicas_serving_it": sum(1 for s in shares if s > 0.01),
        }
        return result
    finally:
        await asyncio.to_thread(control.remove, app)


async def autoscale(
    control: Any,
    specs: list[Any],
    placement: str,
    max_replicas: int,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    from fleet_core.serving import POOL_DEPLOYMENT, Placement, PoolConfig, PoolSizing

    keys = [s.key for s in specs]
    weights = [1 / (r + 1) ** ZIPF_S for r in range(len(keys))]
    config = PoolConfig(models={s.key: s for s in specs}, idle_unload_s=3600)
    sizing = PoolSizing(
        min_replicas=1,
        max_replicas=max_replicas,
        target_ongoing_requests=2,
        num_cpus=0.1,
        max_models_per_replica=len(specs) + 8,
        placement=placement,  # type: ignore[arg-type]
    )
    app = f"scale-{placement}-{uuid.uuid4().hex[:4]}"
    await asyncio.to_thread(control.apply_pool, config, sizing, env, app_name=app)
    try:
        handle = control.handle(Placement(kind="pool", app=app, deployment=POOL_DEPLOYMENT))
        run = await drive(handle, keys, 16, duration_s=args.autoscale_s, weights=weights)
        view = await asyncio.to_thread(control.describe, app)
        running = [r for r in view.deployments[POOL_DEPLOYMENT].replicas if r.state == "RUNNING"]
        stats = await all_stats(handle, len(running))
        served = sorted((sum(m.served for m in s.loaded) for s in stats.values()), reverse=True)
        total = sum(served) or 1
        return {
            **run,
            "replicas_running_at_end": len(running),
            "served_by_replica": served,
            "share_not_on_busiest": round(1 - served[0] / total, 3),
        }
    finally:
        await asyncio.to_thread(control.remove, app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--hot-connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--autoscale-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="60 models, 2 replicas, short phases")
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.models, args.replicas, args.passes, args.duration, args.autoscale_s = 60, [2], 2, 4.0, 15.0
    sigterm_as_interrupt()

    from fleet_sdk.embedded_ray import EmbeddedRay
    from fleet_serving import ServingControl

    work = Path(tempfile.mkdtemp(prefix="pool-spread-"))
    head = EmbeddedRay(num_cpus=4, log_path=work / "ray.log")
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "runs": {}}
    head.start()
    try:
        control = ServingControl(deploy_timeout_s=300)
        control.connect(head.address)
        specs = build_specs(work / "models", args.models)
        env = {"FLEET_HOME": str(work / "home")}

        async def body() -> None:
            for placement in ("serve", "rendezvous"):
                for n in args.replicas:
                    print(f"{placement}, {n} replicas ...", flush=True)
                    run = await measure(control, specs, placement, n, args, env)
                    results["runs"][f"{placement}/{n}"] = run
                    print(json.dumps(run), flush=True)
                print(f"{placement}, autoscale 1..{max(args.replicas)} ...", flush=True)
                run = await autoscale(control, specs, placement, max(args.replicas), args, env)
                results["runs"][f"{placement}/autoscale"] = run
                print(json.dumps(run), flush=True)

        asyncio.run(body())
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        head.stop()
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    print_table(results["runs"])
    name = f"pool-spread{'-quick' if args.quick else ''}-{dt.date.today().isoformat()}.json"
    out = args.out or RESULTS_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def print_table(runs: dict[str, Any]) -> None:
    print(f"\n{'run':<22}{'repl/model':>11}{'max':>5}{'hot rps':>9}{'hot served by':>15}{'fails':>7}")
    for name, run in runs.items():
        if "placement" in run:
            p, h = run["placement"], run["hot"]
            fails = sum(run["uniform"]["failures"].values()) + sum(h["failures"].values())
            print(
                f"{name:<22}{p['replicas_per_model_mean']:>11}{p['replicas_per_model_max']:>5}"
                f"{h['rps']:>9}{h['replicas_serving_it']:>15}{fails:>7}"
            )
        else:
            print(
                f"{name:<22} autoscale: {run['replicas_running_at_end']} replicas, "
                f"{run['share_not_on_busiest']:.0%} of calls off the busiest, {run['rps']} rps, "
                f"failures {run['failures']}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
