"""Ray drivers for the bench, each a short-lived process so the orchestrator never holds Ray state.

``deploy``: start Serve's HTTP proxy on a loopback port and run target (b), a deployment whose HTTP
``__call__`` and ``predict`` method both serve the bench model.
``handle``: target (d), a loop of ``DeploymentHandle`` calls from a driver at a given concurrency for a
fixed duration; prints one JSON object (rps, latency percentiles) on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
# A ~/.ray/auth_token left by any local `ray.init()` turns token auth on for every new head started
# without RAY_AUTH_MODE, and drivers that connect by address then fail; everything here is loopback.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Under `uv run` (the Makefile) Ray's uv hook would ship the cwd to every worker as a runtime env and
# run them with `uv run` (from bench/ it refuses outright: pyproject.toml is not in the working_dir);
# the bench's Ray heads already run this venv, so drivers here and in children only attach.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray
from ray import serve
from workload import example_row, fleet_runtime, predict_rows, rows_from_body

BENCH_APP = "bench-model"
BENCH_DEPLOYMENT = "BenchModel"


@serve.deployment(name=BENCH_DEPLOYMENT, num_replicas=1, max_ongoing_requests=64)
class BenchModel:
    """The bench model behind Serve's HTTP proxy and behind handles."""

    def __init__(self) -> None:
        self.model = fleet_runtime()

    async def __call__(self, request: Any) -> dict[str, Any]:
        body = await request.json()
        return {"predictions": predict_rows(self.model, rows_from_body(body))}

    async def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        return predict_rows(self.model, rows)


def deploy(address: str, http_port: int) -> None:
    ray.init(address=address, namespace="bench", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    # Replicas import ``workload`` from this directory, like the driver does.
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    app = BenchModel.options(ray_actor_options={"runtime_env": {"env_vars": {"PYTHONPATH": bench_dir}}})
    serve.run(app.bind(), name=BENCH_APP, route_prefix="/predict")
    print(json.dumps({"app": BENCH_APP, "http_port": http_port}))


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))
    return sorted_ms[k]


async def handle_loop(
    handle: Any, rows: list[dict[str, Any]], concurrency: int, duration_s: float, model_id: str | None
) -> dict[str, Any]:
    call = handle.options(multiplexed_model_id=model_id) if model_id else handle
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await call.predict.remote(rows)
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "duration_s": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
    }


def run_handles(args: argparse.Namespace) -> None:
    ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    handle = serve.get_deployment_handle(args.deployment, app_name=args.app)
    rows = [example_row()]
    if args.rows_json:
        rows = json.loads(args.rows_json)
    results = {}

    async def main() -> None:
        # Warm-up: resolve the replica set (and, for a pool, load the model) before timing.
        await handle_loop(handle, rows, 1, args.warmup, args.model_id)
        for c in args.concurrency:
            results[str(c)] = await handle_loop(handle, rows, c, args.duration, args.model_id)

    asyncio.run(main())
    print(json.dumps(results))
    sys.stdout.flush()


def pool_stats(args: argparse.Namespace) -> None:
    """Ask the pool's replicas what they hold: calls ``stats`` until every live replica answered."""
    from ray.serve.context import _get_global_client

    ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    app = _get_global_client().get_serve_details()["applications"].get(args.app, {})
    replicas = app.get("deployments", {}).get(args.deployment, {}).get("replicas", [])
    expected = {r["replica_id"] for r in replicas if r.get("state") == "RUNNING"}
    handle = serve.get_deployment_handle(args.deployment, app_name=args.app)
    seen: dict[str, Any] = {}

    async def ask() -> None:
        # Inside a loop: with RAY_SERVE_THROUGHPUT_OPTIMIZED the router shares the caller's loop.
        for _ in range(args.attempts):
            stats = await handle.stats.remote()
            stats = stats.model_dump() if hasattr(stats, "model_dump") else stats
            seen[stats["replica_id"]] = stats
            if expected and expected <= set(seen):
                break

    asyncio.run(ask())
    pids = {r["replica_id"]: r.get("pid") for r in replicas}
    for rid, stats in seen.items():
        stats["pid"] = pids.get(rid)
    print(json.dumps({"expected_replicas": sorted(expected), "replicas": list(seen.values())}))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("--address", required=True)
    d.add_argument("--http-port", type=int, required=True)
    h = sub.add_parser("handle")
    h.add_argument("--address", required=True)
    h.add_argument("--namespace", default="bench")
    h.add_argument("--app", default=BENCH_APP)
    h.add_argument("--deployment", default=BENCH_DEPLOYMENT)
    h.add_argument("--model-id", default=None, help="multiplexed_model_id (pool deployments)")
    h.add_argument("--rows-json", default=None)
    h.add_argument("--duration", type=float, default=10.0)
    h.add_argument("--warmup", type=float, default=2.0)
    h.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    s = sub.add_parser("pool-stats")
    s.add_argument("--address", required=True)
    s.add_argument("--namespace", default="modelfleet")
    s.add_argument("--app", required=True)
    s.add_argument("--deployment", required=True)
    s.add_argument("--attempts", type=int, default=40)
    args = parser.parse_args()
    if args.cmd == "deploy":
        deploy(args.address, args.http_port)
    elif args.cmd == "pool-stats":
        pool_stats(args)
    else:
        run_handles(args)


if __name__ == "__main__":
    main()
