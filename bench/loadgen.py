"""Closed-loop HTTP load: wrk (preferred) or an in-Python aiohttp fallback, same result shape.

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


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def wrk_script(
    body: str, headers: dict[str, str], paths: list[str] | None, sequence: list[int] | None
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
    body: str,
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
    body: str,
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
    data = body.encode()
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


def run_load(
    url: str,
    body: str,
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
