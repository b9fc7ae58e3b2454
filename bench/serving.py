"""Serving benchmark: one sklearn model served by the gateway and by what a user would run instead,
measured in the same run on this box.

Servers (``--only`` picks among them), each started once for the cells that use it:

  inprocess         plain FastAPI + uvicorn, one worker, the model in the process (the limit)
  proxy             a Ray Serve deployment behind Serve's own HTTP proxy (private Ray head), and
                    ``DeploymentHandle`` loops from a driver to the same deployment
  proxy-default     the same proxy with Serve's default flags (RAY_SERVE_THROUGHPUT_OPTIMIZED=0)
  gateway           the ModelFleet gateway (embedded stack, ``deploy_policy="direct"``, shared pool),
                    ``POST /v2/models/{name}/infer`` with a bearer token: the JSON body, the same
                    tensor in the binary extension (``gateway-binary``), the JSON body again under
                    h2load over HTTP/1.1 (``gateway-h2load``) and ``ModelInfer`` over gRPC under
                    h2load (``gateway-grpc``, the gateway's ``FLEET_GRPC_PORT``); and handle loops to
                    the pool with the model's multiplexed id (what the gateway calls when the
                    model is not in its own process). The gateway serves this small model from its
                    own copy (its default, ``FLEET_LOCAL_MODELS_MB``): the cells start once it does
  gateway-via-ray   the same stack with ``FLEET_LOCAL_MODELS_MB=0``: every call through Ray to the
                    pool replica, as for a model the gateway does not keep itself
  mlserver          MLServer 1.7 + mlserver-sklearn with its default settings (``bench/peers``, its
                    own environment: ``mlserver_peer.py``)
  mlserver-batched  the same with adaptive batching on (max_batch_size 32, max_batch_time 2 ms)

Every HTTP cell gets the same body (one row as an OIP tensor, ``workload.request_body``) and the same
closed-loop load (wrk, or the bench's aiohttp fallback) at 1 and 16 connections for ``--duration``
seconds after a warm-up. gRPC is loaded by h2load (nghttp2's, C like wrk; wrk has no HTTP/2), and
so is one HTTP cell, so that the gRPC / HTTP check compares two cells of one load generator; without
h2load those two cells are skipped with a note. Every cell's answer to its body is kept in the
results (``answers``), and the binary and gRPC answers must equal the JSON one before their load.
A cell is a name, the server it needs and how to load it (``CELLS``); the targets are ratios between
cells of this one run (``CHECKS``), never absolute numbers from another day.
Adding a cell is a ``Cell(name, server, measure)`` line (``http(path, body)`` or ``handle_loop``, or a
new ``Measure`` for another load generator); a new server is a context manager in ``servers()`` that
yields its ``Endpoint``; a new target is a ``Check`` line.

Usage: ``.venv/bin/python bench/serving.py [--duration 10] [--only gateway mlserver ...]``
(``--quick``: 3 s cells). Writes ``bench/results/serving[-quick]-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
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

import httpx
import mlserver_peer
from harness import BENCH_DIR, child, machine, run_driver, sigterm_as_interrupt, wait_http, write_results
from loadgen import (
    H2LOAD_INSTALL,
    LoadResult,
    check_wrk_carries_bytes,
    grpc_frame,
    h2load_available,
    run_h2load,
    run_load,
    wrk_available,
)
from workload import (
    binary_request_body,
    example_row,
    grpc_infer_request,
    request_body,
    train_model,
    training_data,
)

MODEL_NAME = "bench-logreg"
OIP_INFER = f"/v2/models/{MODEL_NAME}/infer"
OIP_GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Run:
    duration_s: float
    warmup_s: float
    connections: list[int]
    python_load: bool
    workdir: Path
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    """Each HTTP cell's answer to the body, as sent before its load (same model, same prediction)."""
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, name: str, res: dict[str, Any]) -> None:
        self.results.setdefault(name, {})[str(res["connections"])] = res
        print(
            f"  {name:<18} c={res['connections']:<3} {res['rps']:8.1f} rps  p50 {res['p50_ms']:7.2f} ms  "
            f"p99 {res['p99_ms']:7.2f} ms  errors {res['errors']}",
            flush=True,
        )
        if res["errors"]:
            self.notes.append(f"{name} c={res['connections']}: {res['errors']} failed requests")

    def load(self, name: str, url: str, body: str | bytes, headers: dict[str, str] | None = None) -> None:
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
            self.record(name, res.as_dict())

    def load_with(self, name: str, once: Callable[[int, float], dict[str, Any]]) -> None:
        """``load`` for another generator: ``once(connections, seconds)`` runs it and returns the
        result (``LoadResult.as_dict()`` and anything the cell adds); a warm-up first."""
        once(max(self.connections), self.warmup_s)
        for c in self.connections:
            self.record(name, once(c, self.duration_s))

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
            self.record(name, {"tool": "handle-loop", **res, "connections": int(c)})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Endpoint:
    """Where a started server answers: its base URL and headers for HTTP cells, and the
    ``ray_driver.py handle`` arguments for handle-loop cells."""

    base_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    driver_args: list[str] = field(default_factory=list)
    grpc_target: str = ""
    """``host:port`` of its Open Inference Protocol gRPC endpoint, when it has one."""


Server = Callable[[Run], contextlib.AbstractContextManager[Endpoint]]


@contextlib.contextmanager
def serve_inprocess(run: Run) -> Iterator[Endpoint]:
    from fleet_sdk.embedded_broker import free_port

    port = free_port()
    with child(
        [sys.executable, str(BENCH_DIR / "inprocess_app.py"), "--port", str(port)],
        run.workdir / "inprocess.log",
    ):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/predict", timeout_s=60, method="POST", body=request_body())
        yield Endpoint(base)


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


def serve_ray(*, optimized: bool) -> Server:
    """A Serve deployment behind Serve's HTTP proxy on a private Ray head; ``optimized``: with
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1, as the stack runs Ray, else Serve's defaults."""

    @contextlib.contextmanager
    def start(run: Run) -> Iterator[Endpoint]:
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
                base = f"http://127.0.0.1:{http_port}"
                wait_http(f"{base}/predict", timeout_s=60, method="POST", body=request_body())
                yield Endpoint(base, driver_args=["--address", ray.address])
            finally:
                ray.stop()

    return start


def serve_stack(start_timeout_s: float, *, local: bool = True) -> Server:
    """The embedded stack with the bench model registered (``deploy_policy="direct"``: the shared pool)
    and answering through the gateway: from the gateway's own copy of the model (its default,
    ``FLEET_LOCAL_MODELS_MB``; the cells start once the gateway has loaded it), or with ``local``
    False from the pool replica through Ray on every call."""

    @contextlib.contextmanager
    def start(run: Run) -> Iterator[Endpoint]:
        from fleet_core.serving import POOL_APP, POOL_DEPLOYMENT, SERVE_NAMESPACE
        from fleet_sdk import Client
        from fleet_sdk.config import ClientConfig
        from fleet_sdk.stack import Stack

        home = run.workdir / "fleet-home"
        stack = Stack(home)
        # The gateway limits requests per token; the bench sends thousands per second with one token.
        env = {"FLEET_RATE_LIMIT_RPS": "1000000", "FLEET_RATE_LIMIT_BURST": "1000000"}
        if not local:
            env["FLEET_LOCAL_MODELS_MB"] = "0"
        t0 = time.monotonic()
        try:
            state = stack.start(
                broker_port=0,
                ports={"registry": 0, "deployer": 0, "gateway": 0, "monitor": 0, "retrainer": 0},
                grpc_port=0,  # the gateway's OIP gRPC endpoint (FLEET_GRPC_PORT) on a free port
                detach=True,
                env=env,
                timeout_s=start_timeout_s,
                log=lambda m: print("  " + m),
            )
            print(f"  stack up in {time.monotonic() - t0:.1f}s (logs: {stack.logs})", flush=True)
            cfg = ClientConfig.load(home / "config")
            row = example_row()
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
                deadline = time.monotonic() + start_timeout_s
                while True:
                    try:
                        client.predict(MODEL_NAME, row)
                        break
                    except Exception as exc:  # not routed / not loaded yet
                        if time.monotonic() > deadline:
                            raise TimeoutError(
                                f"{MODEL_NAME} never answered through the gateway: {str(exc)[:300]}"
                            ) from exc
                        time.sleep(0.5)
                print(
                    f"  registered + deployed + first prediction in {time.monotonic() - t1:.1f}s", flush=True
                )
                if local:
                    wait_local(client, f"{MODEL_NAME}:{version}", row, deadline)
            assert state.ray is not None
            gateway = next(c for c in state.services if c.name == "gateway")
            yield Endpoint(
                cfg.urls["gateway_url"],
                headers={"Authorization": f"Bearer {cfg.token}"},
                grpc_target=(gateway.grpc_url or "").removeprefix("grpc://"),
                driver_args=[
                    *("--address", state.ray.url.removeprefix("ray://")),
                    *("--namespace", SERVE_NAMESPACE, "--app", POOL_APP, "--deployment", POOL_DEPLOYMENT),
                    *("--model-id", f"{MODEL_NAME}:{version}", "--rows-json", json.dumps([row])),
                ],
            )
        finally:
            stopped = stack.stop()
            print(f"  stack stopped ({', '.join(stopped) or 'nothing running'})", flush=True)

    return start


def wait_local(client: Any, key: str, row: dict[str, Any], deadline: float) -> None:
    """Call the model until the gateway serves it from its own copy (``GET /v1/local-models``)."""
    t0 = time.monotonic()
    while True:
        client.predict(MODEL_NAME, row)
        if key in {m["key"] for m in client.local_models()["models"]}:
            print(f"  served by the gateway itself after {time.monotonic() - t0:.1f}s", flush=True)
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway never loaded {key} itself: {client.local_models()}")
        time.sleep(0.2)


def serve_mlserver(*, batching: bool) -> Server:
    @contextlib.contextmanager
    def start(run: Run) -> Iterator[Endpoint]:
        t0 = time.monotonic()
        with mlserver_peer.serve(run.workdir, train_model(), MODEL_NAME, batching=batching) as base:
            print(f"  mlserver ready in {time.monotonic() - t0:.1f}s", flush=True)
            yield Endpoint(base)

    return start


# ---------------------------------------------------------------------------------------- cells

Measure = Callable[[Run, str, Endpoint], None]


def http(path: str, body: Callable[[], str] = request_body) -> Measure:
    """POST ``body()`` to the server's ``path`` under the bench's load generator."""

    def measure(run: Run, name: str, at: Endpoint) -> None:
        url, data = at.base_url + path, body()
        answer = httpx.post(url, content=data, headers={"Content-Type": "application/json", **at.headers})
        run.answers[name] = f"{answer.status_code} {answer.text[:300]}"
        answer.raise_for_status()
        run.load(name, url, data, headers=at.headers)

    return measure


Outputs = list[tuple[str, str, list[int], list[Any]]]
"""An OIP answer's output tensors as (name, datatype, shape, values): what every form must agree on."""


def json_outputs(answer: Any) -> Outputs:
    return [(o["name"], o["datatype"], list(o["shape"]), list(o["data"])) for o in answer["outputs"]]


def json_answer(at: Endpoint, path: str) -> Outputs:
    """The outputs of the server's answer to the JSON body: the reference the other forms must equal."""
    answer = httpx.post(
        at.base_url + path, content=request_body(), headers={"Content-Type": "application/json", **at.headers}
    )
    answer.raise_for_status()
    return json_outputs(answer.json())


def same_answer(name: str, got: Outputs, expected: Outputs) -> None:
    if got != expected:
        raise RuntimeError(f"{name} answers {got} where the JSON body gets {expected}")


def http_binary(path: str) -> Measure:
    """``http`` with the body in Triton's binary tensor extension (``workload.binary_request_body``);
    its answer must equal the JSON body's, and wrk must be seen to carry the bytes exactly."""

    def measure(run: Run, name: str, at: Endpoint) -> None:
        url = at.base_url + path
        data, framing = binary_request_body()
        headers = {**framing, **at.headers}
        expected = json_answer(at, path)
        answer = httpx.post(url, content=data, headers=headers)
        run.answers[name] = f"{answer.status_code} {answer.text[:300]}"
        answer.raise_for_status()
        same_answer(name, json_outputs(answer.json()), expected)
        if wrk_available() and not run.python_load:
            print(f"  wrk carried a binary probe exactly in {check_wrk_carries_bytes()} requests", flush=True)
        run.load(name, url, data, headers=headers)

    return measure


def h2load_missing(run: Run, name: str) -> bool:
    if h2load_available():
        return False
    note = f"{name} skipped: h2load is not installed (`{H2LOAD_INSTALL}`)"
    run.notes.append(note)
    print(f"  {note}", flush=True)
    return True


def h2load_http(path: str) -> Measure:
    """The JSON body over HTTP/1.1 under h2load (``--h1``), so that gRPC is compared with HTTP from
    one load generator; rps counts 2xx answers."""

    def measure(run: Run, name: str, at: Endpoint) -> None:
        if h2load_missing(run, name):
            return
        url, body = at.base_url + path, request_body().encode()
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in at.headers.items()}}
        answer = httpx.post(url, content=body, headers=headers)
        run.answers[name] = f"{answer.status_code} {answer.text[:300]}"
        answer.raise_for_status()

        def once(connections: int, seconds: float) -> dict[str, Any]:
            out = run_h2load(url, body, connections=connections, duration_s=seconds, headers=headers, h1=True)
            return out.result(ok=out.status.get("2xx", 0)).as_dict()

        run.load_with(name, once)

    return measure


async def grpc_infer(target: str, message: bytes, authorization: str) -> Outputs:
    """One ``ModelInfer`` call through grpcio's asyncio client and the generated stubs; its outputs."""
    import grpc

    from fleet_core.tensor_bytes import decode_tensor_bytes
    from fleet_gateway.grpc_gen import grpc_predict_v2_pb2 as pb
    from fleet_gateway.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answer = await stub.ModelInfer(
            pb.ModelInferRequest.FromString(message), metadata=(("authorization", authorization),), timeout=10
        )
    return [
        (o.name, o.datatype, list(o.shape), decode_tensor_bytes(o.datatype, list(o.shape), raw, o.name))
        for o, raw in zip(answer.outputs, answer.raw_output_contents, strict=True)
    ]


def grpc_calls(metrics_url: str, method: str = "ModelInfer") -> dict[str, float]:
    """The gateway's own count of ``method`` calls by status code (``fleet_grpc_requests``)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).raise_for_status().text
    return {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "fleet_grpc_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("method") == method
    }


def h2load_grpc(run: Run, name: str, at: Endpoint) -> None:
    """``ModelInfer`` over h2c under h2load: the body is one gRPC frame holding the request
    (``workload.grpc_infer_request``), one call in flight per connection. h2load sees only HTTP
    status, which is 200 for a failed call too, so a call counts as successful only as far as the
    gateway's own ``fleet_grpc_requests{method="ModelInfer",code="OK"}`` rose across the run; the
    codes it counted are kept with the result (a few ``CANCELLED``, at most one per connection, are
    the calls h2load abandons when its time is up, which it does not count either). One real
    grpcio call first must answer as JSON does."""
    if not at.grpc_target:
        raise RuntimeError("the server has no gRPC endpoint")
    if h2load_missing(run, name):
        return
    message = grpc_infer_request(MODEL_NAME)
    authorization = at.headers["Authorization"]
    expected = json_answer(at, OIP_INFER)
    got = asyncio.run(grpc_infer(at.grpc_target, message, authorization))
    run.answers[name] = f"OK {got}"
    same_answer(name, got, expected)
    url, body = f"http://{at.grpc_target}{OIP_GRPC_INFER}", grpc_frame(message)
    headers = {"content-type": "application/grpc", "te": "trailers", "authorization": authorization}
    metrics_url = at.base_url + "/metrics"

    def once(connections: int, seconds: float) -> dict[str, Any]:
        before = grpc_calls(metrics_url)
        out = run_h2load(url, body, connections=connections, duration_s=seconds, headers=headers)
        after = grpc_calls(metrics_url)
        codes = {code: int(n - before.get(code, 0)) for code, n in after.items() if n != before.get(code, 0)}
        ok = min(out.status.get("2xx", 0), codes.get("OK", 0))
        return {**out.result(ok=ok).as_dict(), "grpc_codes": codes}

    run.load_with(name, once)


def handle_loop(run: Run, name: str, at: Endpoint) -> None:
    """``await handle.predict.remote(rows)`` loops from a separate driver process."""
    run.handles(name, at.driver_args, run.workdir / f"{name}-driver.log")


@dataclass(frozen=True)
class Cell:
    name: str
    server: str
    """Key of the server it needs; cells of one server run, in order, while it is up once."""
    measure: Measure


CELLS = [
    Cell("in-process", "inprocess", http("/predict")),
    Cell("ray-proxy", "proxy", http("/predict")),
    Cell("handle", "proxy", handle_loop),
    Cell("ray-proxy-default", "proxy-default", http("/predict")),
    Cell("gateway", "gateway", http(OIP_INFER)),
    Cell("gateway-binary", "gateway", http_binary(OIP_INFER)),
    Cell("gateway-h2load", "gateway", h2load_http(OIP_INFER)),
    Cell("gateway-grpc", "gateway", h2load_grpc),
    Cell("handle-pool", "gateway", handle_loop),
    Cell("gateway-via-ray", "gateway-via-ray", http(OIP_INFER)),
    Cell("mlserver", "mlserver", http(OIP_INFER)),
    Cell("mlserver-batched", "mlserver-batched", http(OIP_INFER)),
]


def servers(stack_timeout_s: float) -> dict[str, Server]:
    return {
        "inprocess": serve_inprocess,
        "proxy": serve_ray(optimized=True),
        "proxy-default": serve_ray(optimized=False),
        "gateway": serve_stack(stack_timeout_s),
        "gateway-via-ray": serve_stack(stack_timeout_s, local=False),
        "mlserver": serve_mlserver(batching=False),
        "mlserver-batched": serve_mlserver(batching=True),
    }


SERVER_KEYS = list(dict.fromkeys(c.server for c in CELLS))


def run_cells(run: Run, only: list[str], stack_timeout_s: float) -> None:
    """Start each chosen server once, in ``CELLS`` order, and measure its cells; a failure is kept
    per cell (or per server, for every cell it would have served) and the run goes on."""
    starts = servers(stack_timeout_s)
    for key in SERVER_KEYS:
        if key not in only:
            continue
        print(f"[{key}]", flush=True)
        try:
            with starts[key](run) as endpoint:
                for cell in (c for c in CELLS if c.server == key):
                    try:
                        cell.measure(run, cell.name, endpoint)
                    except Exception as exc:
                        run.errors[cell.name] = f"{type(exc).__name__}: {exc}"
                        (run.workdir / f"{cell.name}-error.txt").write_text(traceback.format_exc())
                        print(f"  {cell.name} failed: {str(exc)[:2000]}", flush=True)
        except Exception as exc:
            run.errors[key] = f"{type(exc).__name__}: {exc}"
            (run.workdir / f"{key}-error.txt").write_text(traceback.format_exc())
            print(f"  {key} failed: {str(exc)[:2000]}", flush=True)


# ---------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Check:
    """``a`` against ``b``: rps ratio (``a``/``b``) or p50 difference in ms (``a`` - ``b``), at the
    highest (``hi``) or lowest (``lo``) connection count."""

    label: str
    a: str
    b: str
    at: str
    op: str
    target: float
    kind: str = "rps"
    secondary: bool = False
    """Shown only when both cells were measured."""


CHECKS = [
    Check("gateway / mlserver rps", "gateway", "mlserver", "hi", ">=", 1.5),
    Check("gateway / mlserver-batched rps", "gateway", "mlserver-batched", "hi", ">=", 1.0),
    Check("gateway / mlserver rps", "gateway", "mlserver", "lo", ">=", 1.0),
    Check("gateway / ray-proxy rps", "gateway", "ray-proxy", "hi", ">=", 3.0),
    Check("gateway / in-process rps", "gateway", "in-process", "hi", ">=", 0.5),
    Check("gateway p50 - handle-pool p50", "gateway", "handle-pool", "lo", "<=", 2.0, kind="p50"),
    Check("gRPC / HTTP rps (c=16, h2load both)", "gateway-grpc", "gateway-h2load", "hi", ">=", 1.2),
    Check("gateway / ray-proxy-default rps", "gateway", "ray-proxy-default", "hi", ">=", 3.0, secondary=True),
    Check("gateway p50 - handle p50", "gateway", "handle", "lo", "<=", 2.0, kind="p50", secondary=True),
    Check(
        "gateway-via-ray p50 - handle-pool p50",
        "gateway-via-ray",
        "handle-pool",
        "lo",
        "<=",
        2.0,
        kind="p50",
        secondary=True,
    ),
    Check("gateway-via-ray / mlserver rps", "gateway-via-ray", "mlserver", "hi", ">=", 1.5, secondary=True),
]
CONTEXT = [
    ("mlserver-batched", "mlserver", "hi"),
    ("mlserver", "in-process", "hi"),
    ("mlserver", "in-process", "lo"),
    ("ray-proxy-default", "ray-proxy", "hi"),
    ("ray-proxy", "in-process", "hi"),
    ("handle", "in-process", "hi"),
    ("handle", "ray-proxy", "hi"),
    ("gateway", "handle-pool", "hi"),
    ("gateway", "gateway-via-ray", "hi"),
    ("gateway", "gateway-via-ray", "lo"),
    ("gateway-via-ray", "mlserver", "lo"),
    ("gateway-binary", "gateway", "hi"),
    ("gateway-binary", "gateway", "lo"),
    ("gateway-h2load", "gateway", "hi"),
    ("gateway-grpc", "gateway", "hi"),
]


def summarize(run: Run) -> dict[str, Any]:
    r = run.results
    conns = {"hi": str(max(run.connections)), "lo": str(min(run.connections))}

    def get(name: str, at: str, key: str) -> float | None:
        return r.get(name, {}).get(conns[at], {}).get(key)  # type: ignore[no-any-return]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out = []
    for ch in CHECKS:
        if ch.secondary and not (ch.a in r and ch.b in r):
            continue
        if ch.kind == "p50":
            a, b = get(ch.a, ch.at, "p50_ms"), get(ch.b, ch.at, "p50_ms")
            value = a - b if a is not None and b is not None else None
        else:
            value = ratio(get(ch.a, ch.at, "rps"), get(ch.b, ch.at, "rps"))
        met = None if value is None else (value >= ch.target if ch.op == ">=" else value <= ch.target)
        out.append(
            {
                "check": ch.label + (" (secondary)" if ch.secondary else ""),
                "at": f"c={conns[ch.at]}",
                "value": value,
                "target": f"{ch.op} {ch.target:g} {'ms' if ch.kind == 'p50' else 'x'}",
                "met": met,
                "status": "n/a" if met is None else ("PASS" if met else "MISS"),
            }
        )
    info = []
    for a, b, at in CONTEXT:
        value = ratio(get(a, at, "rps"), get(b, at, "rps"))
        if value is not None:
            info.append({"check": f"{a} / {b} rps", "at": f"c={conns[at]}", "value": value})
    return {"checks": out, "context_ratios": info}


def print_report(run: Run, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # under make or a pipe rich assumes 80 columns and clips the checks
        console = Console(width=120)
    tool = "wrk" if wrk_available() and not run.python_load else "python aiohttp"
    table = Table(title=f"Serving, {run.duration_s:g}s per cell ({tool} load)")
    for col in ("cell", "tool", "conns", "rps", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "cell" else "right")
    names = [c.name for c in CELLS if c.name in run.results]
    names += [n for n in run.results if n not in names]
    for name in names:
        for c, res in run.results[name].items():
            table.add_row(
                name,
                str(res.get("tool", "")),
                c,
                f"{res['rps']:.1f}",
                f"{res['p50_ms']:.2f}",
                f"{res['p99_ms']:.2f}",
                str(res["errors"]),
            )
    console.print(table)
    checks = Table(title="Targets (ratios from this run)")
    for col in ("check", "at", "measured", "target", "met"):
        checks.add_column(col)
    for c in summary["checks"]:
        v = c["value"]
        shown = "-" if v is None else (f"{v:.2f} ms" if c["target"].endswith("ms") else f"{v:.2f}x")
        met = {True: "[green]yes[/green]", False: "[red]no[/red]"}.get(c["met"], "[yellow]n/a[/yellow]")
        checks.add_row(c["check"], c["at"], shown, c["target"], met)
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
        choices=SERVER_KEYS,
        default=SERVER_KEYS,
        help="servers to measure (default: all)",
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
    started, box = time.time(), machine()
    try:
        run_cells(run, args.only, args.stack_timeout)
    except KeyboardInterrupt:
        print("interrupted; everything started has been stopped", flush=True)
        return 130
    summary = summarize(run)
    print_report(run, summary)
    write_results(
        "serving",
        "serving",
        quick=args.quick,
        out=args.out,
        started=started,
        box=box,
        config={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": run.connections,
            "servers": args.only,
            "load_tool": "wrk" if wrk_available() and not args.python_load else "python-aiohttp",
            "model": "LogisticRegression, 8 float features, 1 row per request",
            "body": json.loads(request_body()),
            "mlserver_batching": mlserver_peer.BATCHING,
        },
        results=run.results,
        answers=run.answers,
        **summary,
        errors=run.errors,
        notes=run.notes,
        logs=str(workdir),
    )
    return 1 if run.errors else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
