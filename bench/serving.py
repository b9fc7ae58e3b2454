"""Serving benchmark: one sklearn model served four ways on this box, measured in the same run.

  (a) in-process  plain FastAPI + uvicorn, one worker, the model in the process (the limit)
  (b) ray-proxy   a Ray Serve deployment behind Serve's own HTTP proxy (private Ray head)
  (c) gateway     the ModelFleet gateway (embedded stack, ``deploy_policy="direct"``, shared pool),
                  ``POST /v2/models/{name}/infer`` with the plain JSON body and a bearer token
  (d) handle      ``DeploymentHandle.predict.remote`` loops from a driver: to (b)'s deployment, and
                  to the fleet pool with the model's multiplexed id (what the gateway itself calls)

Each HTTP target gets the same closed-loop load (wrk, or an aiohttp fallback) at 1 and 16
connections for ``--duration`` seconds after a warm-up. The targets compare ratios measured in
this one run, never absolute numbers from another day:

  gateway / ray-proxy throughput      >= 3x        (16 connections)
  gateway / in-process throughput     >= 0.35      (16 connections)
  gateway p50 - direct-handle p50     <= 3 ms      (1 connection)

Usage: ``.venv/bin/python bench/serving.py [--duration 10] [--only inprocess proxy proxy-default gateway]``
(``--quick``: 3 s cells). Writes ``bench/results/serving[-quick]-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
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

from harness import BENCH_DIR, RESULTS_DIR, child, machine, run_driver, sigterm_as_interrupt, wait_http
from loadgen import LoadResult, run_load, wrk_available
from workload import request_body, train_model, training_data

TARGETS = {"proxy_x": 3.0, "inprocess_fraction": 0.35, "p50_delta_ms": 3.0}
MODEL_NAME = "bench-logreg"


@dataclass
class Run:
    duration_s: float
    warmup_s: float
    connections: list[int]
    python_load: bool
    workdir: Path
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def load(self, name: str, url: str, body: str, headers: dict[str, str] | None = None) -> None:
        """Warm up at the highest connection count, then measure at each."""
        run_load(
            url,
            body,
            connections=max(self.connections),
            duration_s=self.warmup_s,
            headers=headers,
            force_python=self.python_load,
        )
        for c in self.connections:
            res: LoadResult = run_load(
                url,
                body,
                connections=c,
                duration_s=self.duration_s,
                headers=headers,
                force_python=self.python_load,
            )
            self.results.setdefault(name, {})[str(c)] = res.as_dict()
            print(
                f"  {name:<16} c={c:<3} {res.rps:8.1f} rps  p50 {res.p50_ms:7.2f} ms  "
                f"p99 {res.p99_ms:7.2f} ms  errors {res.errors}",
                flush=True,
            )
            if res.errors:
                self.notes.append(f"{name} c={c}: {res.errors} failed requests of {res.requests}")

    def handles(self, name: str, args: list[str], log: Path) -> None:
        out = run_driver(
            [
                "handle",
                *args,
                "--duration",
                str(self.duration_s),
                "--warmup",
                str(min(self.warmup_s, 3)),
                "--concurrency",
                *map(str, self.connections),
            ],
            log,
            timeout_s=120 + 3 * self.duration_s * len(self.connections),
        )
        for c, res in out.items():
            res = {"tool": "handle-loop", "connections": int(c), **res}  # type: ignore[dict-item]
            self.results.setdefault(name, {})[c] = res
            print(
                f"  {name:<16} c={c:<3} {res['rps']:8.1f} rps  p50 {res['p50_ms']:7.2f} ms  "
                f"p99 {res['p99_ms']:7.2f} ms  errors {res['errors']}",
                flush=True,
            )


def bench_inprocess(run: Run) -> None:
    from fleet_sdk.embedded_broker import free_port

    port = free_port()
    with child(
        [sys.executable, str(BENCH_DIR / "inprocess_app.py"), "--port", str(port)],
        run.workdir / "inprocess.log",
    ):
        url = f"http://127.0.0.1:{port}/predict"
        wait_http(url, timeout_s=60, method="POST", body=request_body())
        run.load("in-process", url, request_body())


@contextlib.contextmanager
def throughput_optimized(on: bool) -> Iterator[None]:
    """Children started inside (the Ray head, drivers) see RAY_SERVE_THROUGHPUT_OPTIMIZED=on."""
    before = os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED")
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_SERVE_THROUGHPUT_OPTIMIZED", None)
        else:
            os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = before


def bench_ray(run: Run, *, optimized: bool = True) -> None:
    """(b) Serve's HTTP proxy and (d) handles to the same deployment, on a private Ray head.

    ``optimized``: with RAY_SERVE_THROUGHPUT_OPTIMIZED=1, as the stack runs Ray; without it (Serve's
    defaults) only the proxy is measured, as ``ray-proxy-default``.
    """
    from fleet_sdk.embedded_broker import free_port
    from fleet_sdk.embedded_ray import EmbeddedRay

    label = "ray-proxy" if optimized else "ray-proxy-default"
    with throughput_optimized(optimized):
        ray = EmbeddedRay(log_path=run.workdir / f"{label}-head.log")
        t0 = time.monotonic()
        try:
            ray.start()
            http_port = free_port()
            run_driver(
                ["deploy", "--address", ray.address, "--http-port", str(http_port)],
                run.workdir / f"{label}-driver.log",
                timeout_s=180,
            )
            print(f"  private Ray head + serve.run ready in {time.monotonic() - t0:.1f}s", flush=True)
            url = f"http://127.0.0.1:{http_port}/predict"
            wait_http(url, timeout_s=60, method="POST", body=request_body())
            run.load(label, url, request_body())
            if optimized:
                run.handles("handle", ["--address", ray.address], run.workdir / f"{label}-driver.log")
        finally:
            ray.stop()


def bench_gateway(run: Run, start_timeout_s: float) -> None:
    """(c) the ModelFleet gateway on the embedded stack, and (d) handles to the fleet pool."""
    from fleet_core.serving import POOL_APP, POOL_DEPLOYMENT, SERVE_NAMESPACE
    from fleet_sdk import Client
    from fleet_sdk.config import ClientConfig
    from fleet_sdk.stack import Stack

    home = run.workdir / "fleet-home"
    stack = Stack(home)
    # The gateway limits requests per token; the bench sends thousands per second with one token.
    env = {"FLEET_RATE_LIMIT_RPS": "1000000", "FLEET_RATE_LIMIT_BURST": "1000000"}
    t0 = time.monotonic()
    try:
        state = stack.start(
            broker_port=0,
            ports={"registry": 0, "deployer": 0, "gateway": 0},
            detach=True,
            env=env,
            timeout_s=start_timeout_s,
            log=lambda m: print("  " + m),
        )
        print(f"  stack up in {time.monotonic() - t0:.1f}s (logs: {stack.logs})", flush=True)
        cfg = ClientConfig.load(home / "config")
        with Client(
            cfg.registry_url,
            cfg.token,
            gateway_url=cfg.urls["gateway_url"],
            deployer_url=cfg.urls["deployer_url"],
            config=cfg,
        ) as client:
            X, y = training_data()
            t1 = time.monotonic()
            reg = client.register_sklearn(
                MODEL_NAME, train_model(), X, y, team="bench", deploy_policy="direct"
            )
            version = int(reg.get("version", 1))
            row = json.loads(request_body())["inputs"]
            deadline, last = time.monotonic() + start_timeout_s, ""
            while True:
                try:
                    client.predict(MODEL_NAME, row)
                    break
                except Exception as exc:  # not routed / not loaded yet
                    last = str(exc)[:300]
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{MODEL_NAME} never answered through the gateway: {last}"
                        ) from exc
                    time.sleep(0.5)
            print(f"  registered + deployed + first prediction in {time.monotonic() - t1:.1f}s", flush=True)
            url = f"{cfg.urls['gateway_url']}/v2/models/{MODEL_NAME}/infer"
            run.load("gateway", url, request_body(), headers={"Authorization": f"Bearer {cfg.token}"})
        assert state.ray is not None
        run.handles(
            "handle-pool",
            [
                "--address",
                state.ray.url.removeprefix("ray://"),
                "--namespace",
                SERVE_NAMESPACE,
                "--app",
                POOL_APP,
                "--deployment",
                POOL_DEPLOYMENT,
                "--model-id",
                f"{MODEL_NAME}:{version}",
                "--rows-json",
                json.dumps([row]),
            ],
            run.workdir / "pool-driver.log",
        )
    finally:
        stopped = stack.stop()
        print(f"  stack stopped ({', '.join(stopped) or 'nothing running'})", flush=True)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(run: Run) -> dict[str, Any]:
    r = run.results
    hi, lo = str(max(run.connections)), str(min(run.connections))

    def get(name: str, c: str, key: str) -> float | None:
        return r.get(name, {}).get(c, {}).get(key)

    handle_ref = "handle-pool" if "handle-pool" in r else "handle"
    checks = [
        (
            "gateway / ray-proxy throughput",
            f"c={hi}",
            ratio(get("gateway", hi, "rps"), get("ray-proxy", hi, "rps")),
            ">=",
            TARGETS["proxy_x"],
            "x",
        ),
        (
            "gateway / in-process throughput",
            f"c={hi}",
            ratio(get("gateway", hi, "rps"), get("in-process", hi, "rps")),
            ">=",
            TARGETS["inprocess_fraction"],
            "x",
        ),
        (
            f"gateway p50 - {handle_ref} p50",
            f"c={lo}",
            (get("gateway", lo, "p50_ms") - get(handle_ref, lo, "p50_ms"))  # type: ignore[operator]
            if get("gateway", lo, "p50_ms") is not None and get(handle_ref, lo, "p50_ms") is not None
            else None,
            "<=",
            TARGETS["p50_delta_ms"],
            "ms",
        ),
    ]
    if "ray-proxy-default" in r:
        checks.append(
            (
                "gateway / ray-proxy-default throughput (secondary)",
                f"c={hi}",
                ratio(get("gateway", hi, "rps"), get("ray-proxy-default", hi, "rps")),
                ">=",
                TARGETS["proxy_x"],
                "x",
            )
        )
    if "handle-pool" in r and "handle" in r:
        d = get("gateway", lo, "p50_ms")
        h = get("handle", lo, "p50_ms")
        if d is not None and h is not None:
            checks.append(
                (
                    "gateway p50 - handle (plain deployment) p50",
                    f"c={lo}",
                    d - h,
                    "<=",
                    TARGETS["p50_delta_ms"],
                    "ms",
                )
            )
    extra = [
        (
            "ray-proxy-default / ray-proxy throughput",
            f"c={hi}",
            ratio(get("ray-proxy-default", hi, "rps"), get("ray-proxy", hi, "rps")),
        ),
        (
            "ray-proxy / in-process throughput",
            f"c={hi}",
            ratio(get("ray-proxy", hi, "rps"), get("in-process", hi, "rps")),
        ),
        (
            "handle / in-process throughput",
            f"c={hi}",
            ratio(get("handle", hi, "rps"), get("in-process", hi, "rps")),
        ),
        (
            "handle / ray-proxy throughput",
            f"c={hi}",
            ratio(get("handle", hi, "rps"), get("ray-proxy", hi, "rps")),
        ),
    ]
    out = []
    for name, at, value, op, target, unit in checks:
        status = (
            "n/a"
            if value is None
            else ("PASS" if (value >= target if op == ">=" else value <= target) else "MISS")
        )
        out.append(
            {"check": name, "at": at, "value": value, "target": f"{op} {target:g} {unit}", "status": status}
        )
    info = [{"check": n, "at": at, "value": v} for n, at, v in extra if v is not None]
    return {"checks": out, "context_ratios": info}


def print_report(run: Run, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tool = "wrk" if wrk_available() and not run.python_load else "python aiohttp"
    table = Table(title=f"Serving, {run.duration_s:g}s per cell ({tool} load)")
    for col in ("target", "conns", "rps", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for name in ("in-process", "ray-proxy", "ray-proxy-default", "gateway", "handle", "handle-pool"):
        for c, res in run.results.get(name, {}).items():
            table.add_row(
                name,
                c,
                f"{res['rps']:.1f}",
                f"{res['p50_ms']:.2f}",
                f"{res['p99_ms']:.2f}",
                str(res["errors"]),
            )
    console.print(table)
    checks = Table(title="Targets (ratios from this run)")
    for col in ("check", "at", "measured", "target", "result"):
        checks.add_column(col)
    for c in summary["checks"]:
        v = c["value"]
        shown = "-" if v is None else (f"{v:.2f} ms" if c["target"].endswith("ms") else f"{v:.2f}x")
        style = {"PASS": "green", "MISS": "red"}.get(c["status"], "yellow")
        checks.add_row(c["check"], c["at"], shown, c["target"], f"[{style}]{c['status']}[/{style}]")
    for c in summary["context_ratios"]:
        checks.add_row(c["check"], c["at"], f"{c['value']:.2f}x", "(context)", "")
    console.print(checks)
    for target, err in run.errors.items():
        console.print(f"[red]{target} failed:[/red] {err}")
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per target")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["inprocess", "proxy", "proxy-default", "gateway"],
        default=["inprocess", "proxy", "proxy-default", "gateway"],
        help="(handle loops run with proxy/gateway)",
    )
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-up: a smoke run")
    parser.add_argument("--python-load", action="store_true", help="use the aiohttp load generator, not wrk")
    parser.add_argument("--stack-timeout", type=float, default=240.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = min(args.duration, 3.0), min(args.warmup, 1.0)
    sigterm_as_interrupt()

    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    run = Run(args.duration, args.warmup, sorted(args.connections), args.python_load, workdir)
    if not wrk_available() or args.python_load:
        run.notes.append(
            "wrk not used: load from the in-Python aiohttp generator (itself CPU-bound on 2 cores)"
        )
    print(f"bench work dir (logs): {workdir}", flush=True)
    started = time.time()
    steps = [
        ("inprocess", bench_inprocess),
        ("proxy", bench_ray),
        ("proxy-default", lambda r: bench_ray(r, optimized=False)),
        ("gateway", lambda r: bench_gateway(r, args.stack_timeout)),
    ]
    try:
        for key, fn in steps:
            if key not in args.only:
                continue
            print(f"[{key}]", flush=True)
            try:
                fn(run)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                run.errors[key] = f"{type(exc).__name__}: {exc}"
                (workdir / f"{key}-error.txt").write_text(traceback.format_exc())
                print(f"  {key} failed: {str(exc)[:2000]}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; everything started has been stopped", flush=True)
        return 130
    summary = summarize(run)
    print_report(run, summary)
    kind = "serving-quick" if args.quick else "serving"
    out = args.out or RESULTS_DIR / f"{kind}-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "serving",
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": run.connections,
            "load_tool": "wrk" if wrk_available() and not args.python_load else "python-aiohttp",
            "model": "LogisticRegression, 8 float features, 1 row per request",
        },
        "results": run.results,
        **summary,
        "errors": run.errors,
        "notes": run.notes,
        "logs": str(workdir),
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 1 if run.errors else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
