"""How much of the gateway's gRPC / HTTP ratio is the transport: grpcio against uvicorn, nothing else.

``bench/serving.py`` finds the gateway's gRPC endpoint slower than its HTTP one (0.66-0.77x at 16
connections) where issue 14 asks for 1.2x. This bench takes the gateway out: one process, one
uvloop event loop, exactly as the gateway runs them, serving

  grpc   grpcio's asyncio server (``grpc.aio``, the gateway's), one unary method with raw bytes in
         and out (no protobuf), and
  http   uvicorn with httptools, a bare ASGI callable that answers a fixed JSON body,

where each call spends ``--work-ms`` of CPU in its handler (a busy loop on ``time.thread_time``), the
stand-in for the gateway's own per-call work (validation, routing, the model, the log: ~0.5 ms per
one-row call at 16 connections on this box). Both are loaded by h2load (``-t1 -m1``, HTTP/2 for
gRPC, HTTP/1.1 keep-alive for HTTP, as ``serving.py``'s two cells), the same body, one after the
other, at each work level. The report gives each protocol's rps, the gRPC / HTTP ratio, and the
transport's own cost per call (1 / rps at 0 ms of work).

The ratio at the gateway's work is the ceiling of what the gateway's gRPC endpoint can reach over
its HTTP one with grpcio on one event loop: if it is below 1.2, no change to ``grpc_server.py`` gets
there.

Usage: ``.venv/bin/python bench/grpc_transport.py [--duration 6] [--work-ms 0 0.25 0.5]``
(``--quick``: 2 s cells). Needs h2load (``apt-get install nghttp2-client``). Writes
``bench/results/grpc-transport[-quick]-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
import time
from pathlib import Path

from harness import child, machine, sigterm_as_interrupt, write_results
from loadgen import grpc_frame, h2load_available, run_h2load
from rich.console import Console
from rich.table import Table

METHOD = "/bench.Transport/Echo"
MESSAGE = b"\x0a\x08" + bytes(range(8)) * 6  # ~50 bytes, the size of a one-row OIP request
ANSWER = b'{"outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[1]}]}'


# ---------------------------------------------------------------------- the server (a child process)


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _serve(grpc_port: int, http_port: int, work_s: float) -> None:
    import grpc
    import uvicorn

    async def echo(request: bytes, context: object) -> bytes:
        _burn(work_s)
        return request

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await receive()
        _burn(work_s)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    server = grpc.aio.server()
    service, method = METHOD.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=http_port,
        loop="none",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    await uvicorn.Server(config).serve()


# ---------------------------------------------------------------------- the driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the transport server did not listen on {port} within {timeout_s:.0f} s")


def measure(work_ms: float, duration_s: float, connections: int, log: Path) -> dict[str, float]:
    grpc_port, http_port = _free_port(), _free_port()
    cmd = [sys.executable, __file__, "--serve", str(grpc_port), str(http_port), str(work_ms)]
    with child(cmd, log):
        _wait_port(grpc_port)
        _wait_port(http_port)
        grpc_headers = {"content-type": "application/grpc", "te": "trailers"}
        grpc_url, http_url = f"http://127.0.0.1:{grpc_port}{METHOD}", f"http://127.0.0.1:{http_port}/"
        run_h2load(grpc_url, grpc_frame(MESSAGE), connections=connections, duration_s=1, headers=grpc_headers)
        g = run_h2load(
            grpc_url,
            grpc_frame(MESSAGE),
            connections=connections,
            duration_s=duration_s,
            headers=grpc_headers,
        )
        run_h2load(http_url, MESSAGE, connections=connections, duration_s=1, headers={}, h1=True)
        h = run_h2load(http_url, MESSAGE, connections=connections, duration_s=duration_s, headers={}, h1=True)
    if g.failed or h.failed or h.status.get("2xx", 0) != h.done:
        raise RuntimeError(f"failed calls at {work_ms} ms: grpc {g}, http {h.status}")
    grpc_rps, http_rps = g.done / g.duration_s, h.done / h.duration_s
    return {
        "work_ms": work_ms,
        "grpc_rps": round(grpc_rps, 1),
        "http_rps": round(http_rps, 1),
        "ratio": round(grpc_rps / http_rps, 3),
        "ceiling_rps": round(1000 / work_ms, 1) if work_ms else float("nan"),
    }


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        import uvloop

        uvloop.run(_serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--work-ms", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--quick", action="store_true", help="2 s cells: a smoke run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.duration = 2.0
    console = Console()
    if not h2load_available():
        console.print("h2load is not installed (apt-get install nghttp2-client): nothing measured")
        return 0
    sigterm_as_interrupt()
    started, box = time.time(), machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="grpc-transport-") as tmp:
        for work_ms in args.work_ms:
            rows.append(measure(work_ms, args.duration, args.connections, Path(tmp) / "server.log"))
            console.print(f"  work {work_ms} ms: {rows[-1]}")
    table = Table(title=f"grpcio vs uvicorn on one uvloop, c={args.connections}, h2load both")
    for column in ("work per call", "gRPC rps", "HTTP rps", "gRPC / HTTP", "work-only ceiling"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r['work_ms']} ms",
            f"{r['grpc_rps']:,.0f}",
            f"{r['http_rps']:,.0f}",
            f"{r['ratio']:.2f}x",
            "-" if r["work_ms"] == 0 else f"{r['ceiling_rps']:,.0f}",
        )
    console.print(table)
    bare = next((r for r in rows if r["work_ms"] == 0), None)
    if bare is not None:
        grpc_ms, http_ms = 1000 / bare["grpc_rps"], 1000 / bare["http_rps"]
        console.print(f"transport cost per call: gRPC {grpc_ms:.3f} ms, HTTP {http_ms:.3f} ms")
    write_results(
        "grpc_transport",
        "grpc-transport",
        quick=args.quick,
        out=args.out,
        started=started,
        box=box,
        config={"duration_s": args.duration, "connections": args.connections, "work_ms": args.work_ms},
        cells=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
