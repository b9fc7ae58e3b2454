"""Closed-loop HTTP load: wrk (preferred) or an in-Python aiohttp fallback, same result shape; and
h2load (``run_h2load``) for HTTP/2 and gRPC, and HTTP/1.1 from the same tool.

``run_load`` sends POSTs with a fixed JSON body to one path, or to a sequence of paths (several
models), at a number of keep-alive connections for a fixed duration, and returns a ``LoadResult``.
With wrk, a generated Lua script sets the body and headers and prints wrk's latency distribution
(the same one ``--latency`` prints) as JSON from its ``done`` hook, so nothing is scraped from text
but the non-2xx count, which both report.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_MARKER = "BENCH_JSON "


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    """Successful (2xx) responses per second."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


_LUA_PLAIN = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}


def lua_string(value: str | bytes) -> str:
    """A Lua string literal holding exactly ``value``'s bytes (``str``: its UTF-8), for any byte.

    Printable ASCII stands for itself, ``"`` and ``\\`` are escaped, every other byte is a decimal
    escape of three digits (``\\ddd``: Lua 5.1's only numeric escape, which LuaJIT, wrk's Lua, reads
    too; always three digits, so a digit after it is never taken into the escape). A JSON literal
    (``json.dumps``) would not do: its ``\\u00XX`` escapes are not Lua 5.1, and it carries text, not
    bytes. ``check_wrk_carries_bytes`` proves the round trip through wrk itself."""
    data = value.encode() if isinstance(value, str) else value
    out = []
    for b in data:
        if b in _LUA_PLAIN:
            out.append(chr(b))
        elif b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


BYTES_PROBE = bytes(range(256)) + b'\x012\x0099\\\\""' + "é→".encode() + bytes(range(255, -1, -1))
"""Every byte value, escapes followed by digits, quotes, backslashes and UTF-8 text."""


def check_wrk_carries_bytes(probe: bytes = BYTES_PROBE) -> int:
    """Send ``probe`` as wrk's body to a loopback echo server for a second and check that every
    request carried exactly those bytes; returns how many were checked. Raises ``RuntimeError``
    naming the first difference otherwise (a self-check for ``lua_string``, before a binary body
    is trusted to the load)."""
    import http.server
    import threading

    seen: list[bytes] = []

    class Record(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        res = run_wrk(
            f"http://127.0.0.1:{server.server_address[1]}/",
            probe,
            connections=1,
            duration_s=1,
            headers={"Content-Type": "application/octet-stream"},
        )
    finally:
        server.shutdown()
        server.server_close()
    if not seen or res.errors:
        raise RuntimeError(f"wrk byte check: {len(seen)} bodies received, {res.errors} errors")
    for body in seen:
        if body != probe:
            at = next((i for i, (a, b) in enumerate(zip(body, probe, strict=False)) if a != b), None)
            at = min(len(body), len(probe)) if at is None else at
            raise RuntimeError(
                f"wrk sent {len(body)} bytes for a {len(probe)}-byte body; first difference at byte {at}: "
                f"{body[at : at + 8]!r} instead of {probe[at : at + 8]!r}"
            )
    return len(seen)


def wrk_script(
    body: str | bytes, headers: dict[str, str], paths: list[str] | None, sequence: list[int] | None
) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body)}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    if paths:
        lines.append("local paths = {" + ",".join(lua_string(p) for p in paths) + "}")
        seq = sequence or list(range(len(paths)))
        lines.append("local seq = {" + ",".join(str(i + 1) for i in seq) + "}")
        lines += [
            "local i = 0",
            "request = function()",
            "  i = i + 1",
            "  if i > #seq then i = 1 end",
            "  return wrk.format(nil, paths[seq[i]])",
            "end",
        ]
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        f"  io.write({lua_string(WRK_MARKER)} .. string.format(",
        '    \'{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,'
        '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\\n\',',
        "    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,",
        "    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str,
    body: str | bytes,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    paths: list[str] | None = None,
    sequence: list[int] | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(body, headers, paths, sequence))
        script = f.name
    try:
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={timeout_s:.0f}s",
            "--latency",
            "-s",
            script,
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(WRK_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}")
    data = json.loads(line[len(WRK_MARKER) :])
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", proc.stdout)
    errors = max(data["status_errors"], int(non2xx.group(1)) if non2xx else 0) + data["socket_errors"]
    duration = data["duration_us"] / 1e6
    ok = max(0, data["requests"] - errors)
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=round(duration, 3),
        requests=data["requests"],
        errors=errors,
        rps=ok / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))]


async def _aiohttp_load(
    url: str,
    body: str | bytes,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    paths: list[str] | None,
    sequence: list[int] | None,
    timeout_s: float,
) -> LoadResult:
    import aiohttp

    base = url.rstrip("/")
    targets = [base + p for p in paths] if paths else [url]
    seq = sequence or list(range(len(targets)))
    latencies: list[float] = []
    requests = errors = 0
    counter = 0
    stop_at = time.perf_counter() + duration_s
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    data = body.encode() if isinstance(body, str) else body
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal requests, errors, counter
            while time.perf_counter() < stop_at:
                target = targets[seq[counter % len(seq)]]
                counter += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(target, data=data) as resp:
                        await resp.read()
                        ok = resp.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                requests += 1
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        tool="python-aiohttp",
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=requests,
        errors=errors,
        rps=len(latencies) / elapsed,
        p50_ms=_pct(latencies, 50),
        p90_ms=_pct(latencies, 90),
        p99_ms=_pct(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"),
    )


H2LOAD_INSTALL = "apt-get install nghttp2-client"


def grpc_frame(message: bytes) -> bytes:
    """One gRPC message on the wire: flag 0 (not compressed), its length (4 bytes, big-endian),
    the serialised protobuf."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


@dataclass
class H2loadRun:
    """What one h2load run reports: its own counts (``done`` requests got a complete response;
    ``status`` counts them by HTTP status class) and each done request's latency from its
    ``--log-file``. HTTP status is all h2load reads: a gRPC call's outcome travels in trailers it
    ignores, so callers of gRPC count failures elsewhere."""

    connections: int
    duration_s: float
    done: int
    failed: int
    """h2load's failed + errored + timeout."""
    status: dict[str, int]
    latencies_ms: list[float]
    reported_rps: float

    def result(self, ok: int) -> LoadResult:
        """The run as a ``LoadResult`` with ``ok`` successful requests (the rest are errors)."""
        lat = sorted(self.latencies_ms)
        return LoadResult(
            tool="h2load",
            connections=self.connections,
            duration_s=self.duration_s,
            requests=self.done + self.failed,
            errors=self.done + self.failed - ok,
            rps=ok / self.duration_s if self.duration_s else 0.0,
            p50_ms=_pct(lat, 50),
            p90_ms=_pct(lat, 90),
            p99_ms=_pct(lat, 99),
            max_ms=lat[-1] if lat else float("nan"),
        )


_H2_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def run_h2load(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    h1: bool = False,
    timeout_s: float = 10.0,
) -> H2loadRun:
    """Closed-loop POSTs of ``body`` with h2load: ``connections`` clients, one request in flight on
    each (``-m 1``), for ``duration_s``; HTTP/2 without TLS (h2c, prior knowledge), or HTTP/1.1
    keep-alive with ``h1``. One thread, as wrk runs."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "requests.tsv"
        data.write_bytes(body)
        cmd = [
            "h2load",
            "-t1",
            f"-c{connections}",
            "-m1",
            f"-D{max(1, round(duration_s))}",
            f"-N{timeout_s:.0f}",
            "-d",
            str(data),
            f"--log-file={log}",
            *(f"-H{k}: {v}" for k, v in headers.items()),
            *(["--h1"] if h1 else []),
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
        finished, counts = _H2_FINISHED.search(proc.stdout), _H2_REQUESTS.search(proc.stdout)
        if finished is None or counts is None:
            raise RuntimeError(
                f"h2load failed ({proc.returncode}): {proc.stderr.strip()[-500:] or proc.stdout[-500:]}"
            )
        codes = _H2_STATUS.search(proc.stdout)
        classes = ("2xx", "3xx", "4xx", "5xx")
        status = dict(zip(classes, map(int, codes.groups()), strict=True)) if codes else {}
        latencies = [int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line]
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    _, _, done, _, failed, errored, timeout = map(int, counts.groups())
    return H2loadRun(
        connections=connections,
        duration_s=round(seconds, 3),
        done=done,
        failed=failed + errored + timeout,
        status=status,
        latencies_ms=latencies,
        reported_rps=float(finished.group(3)),
    )


def run_load(
    url: str,
    body: str | bytes,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    paths: list[str] | None = None,
    sequence: list[int] | None = None,
    timeout_s: float = 10.0,
    force_python: bool = False,
) -> LoadResult:
    """Load ``url`` (or ``url`` + each of ``paths`` in ``sequence`` order, cycling)."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if wrk_available() and not force_python:
        return run_wrk(
            url,
            body,
            connections=connections,
            duration_s=duration_s,
            headers=hdrs,
            paths=paths,
            sequence=sequence,
            timeout_s=timeout_s,
        )
    return asyncio.run(_aiohttp_load(url, body, connections, duration_s, hdrs, paths, sequence, timeout_s))
