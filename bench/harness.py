"""Process lifetimes for the benches: every child is started in its own session and stopped by its
own pid (or process group) from a ``finally``, so Ctrl-C, SIGTERM or an error never leaves Ray, a
stack or a server behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def sigterm_as_interrupt() -> None:
    """SIGTERM (and SIGINT, always) unwind as KeyboardInterrupt, so ``finally`` blocks run."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    # A shell without job control starts background commands with SIGINT ignored; take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def child(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or BENCH_DIR,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc)


def run_driver(args: list[str], log: Path, timeout_s: float) -> dict[str, object]:
    """Run ``ray_driver.py`` to completion in its own session; its last stdout line is JSON."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "ray_driver.py"), *args],
        cwd=BENCH_DIR,
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),  # noqa: SIM115
        start_new_session=True,
        # Under `uv run` (the Makefile's bench targets) Ray's uv hook would ship the project to the
        # workers as a runtime env and refuse because the driver's cwd is bench/; the cluster's
        # workers already run in this venv, so the driver only attaches.
        env={**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"},
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        stop_group(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"ray_driver {args[0]} exited {proc.returncode}; see {log}")
    lines = [ln for ln in out.decode().splitlines() if ln.strip().startswith("{")]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def wait_http(url: str, *, timeout_s: float, method: str = "GET", body: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.request(
                method, url, content=body, headers={"Content-Type": "application/json"}, timeout=5
            )
            if r.status_code < 300:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.TransportError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s ({last})")


def machine() -> dict[str, object]:
    import ray

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "commit": commit,
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED"),
    }


def run_guarded(run: Callable[[], None], workdir: Path, interrupted: str) -> tuple[float, str | None] | None:
    """Run a bench body: returns (start time, error or None); None when interrupted (exit 130).
    An error's traceback is kept in ``workdir/error.txt`` and the results are still written."""
    started = time.time()
    try:
        run()
    except KeyboardInterrupt:
        print(interrupted, flush=True)
        return None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        (workdir / "error.txt").write_text(traceback.format_exc())
        print(f"failed: {error[:3000]}", flush=True)
        return started, error
    return started, None


def write_results(
    bench: str,
    stem: str,
    *,
    quick: bool,
    out: Path | None,
    started: float,
    box: dict[str, object],
    config: dict[str, object],
    **results: object,
) -> Path:
    """A bench's results JSON, ``bench/results/<stem>[-quick]-<date>.json`` unless ``out``: the
    common header (bench, start, wall time, machine with the load average at the end, config),
    then ``results``."""
    path = out or RESULTS_DIR / f"{stem}{'-quick' if quick else ''}-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": bench,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "machine": {**box, "loadavg_at_end": os.getloadavg()},
        "config": config,
        **results,
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results: {path}")
    return path
