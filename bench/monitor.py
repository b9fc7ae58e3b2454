"""Monitor ingest benchmark: ``inference.logged`` through the real broker into the monitor's engine.

Starts the embedded broker (Tansu) on loopback, registers ``--models`` (default 20) credit models
with a real reference profile in the engine (so drift is scored), pre-produces ``--events``
(default 200,000; ``--quick``: 30,000) gateway-shaped ``inference.logged`` events (4 numeric
features and 1 categorical, a class label, a latency, 0.5 % errors, 1 row per request), then
consumes them, measured in the same run:

  raw          a bare ``AIOKafkaConsumer`` (fresh group, getmany of 2000, commit per poll) that
               only counts: the ceiling the broker and aiokafka set on this box
  monitor      the monitor's own consumer (``fleet_monitor.events.monitor_consumer``: decode,
               ``engine.ingest``, ``engine.settle``, commit) on SQLite, beside the service's timers
               (``tick`` every 1 s, the Parquet lake flushed every 10 s in a thread)
  no-lake      the same without the lake
  10-rows      the same with the lake, 10 rows per request (N/10 events: the same row count)

Rates are given from the first event counted (the target: ``monitor`` >= 20,000 events/s) and
from the consumer's start (the group join, ~5 s on Tansu, included); for lake runs also with the
rows still buffered at the end flushed. Each monitor cell gets a fresh broker, since its group
name (``monitor``) is fixed. Also recorded: CPU and garbage-collector time per event, how late a
100 ms timer wakes (event-loop lag) and the longest gap between ticks. When the target is missed
(or with ``--profile``) the engine is profiled in-process: decode / ingest / settle / flush per
event, and cProfile hot spots of ``parse_event`` and of ``ingest`` + ``settle`` + flush.
``--gc-freeze`` and ``--gc-threshold`` try collector settings the service does not have.

Usage: ``.venv/bin/python bench/monitor.py [--events 200000] [--quick] [--profile]``.
Writes ``bench/results/monitor.json`` (``monitor-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import io
import itertools
import json
import math
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import REPO, RESULTS_DIR, run_guarded, sigterm_as_interrupt

from fleet_core.broker import ensure_topics
from fleet_core.db import Database
from fleet_core.events import (
    CloudEvent,
    InferenceLogged,
    ModelRegistered,
    Topic,
    make_event,
    parse_event,
)
from fleet_core.profile import reference_profile
from fleet_core.schemas import FieldSpec, Signature
from fleet_monitor.app import MIGRATIONS, tune_garbage_collector
from fleet_monitor.engine import EngineSettings, MonitorEngine
from fleet_monitor.events import monitor_consumer
from fleet_monitor.lake import InferenceLake, LakeSettings
from fleet_monitor.settings import MonitorSettings
from fleet_monitor.store import MonitorStore
from fleet_sdk.embedded_broker import EmbeddedBroker

TARGET_EVENTS_S = 20_000.0
TOPIC = Topic.INFERENCE_LOGGED
FEATURES = ("income", "age", "balance", "tenure")
MEANS = {"income": 50.0, "age": 40.0, "balance": 1000.0, "tenure": 5.0}
STDS = {"income": 10.0, "age": 12.0, "balance": 300.0, "tenure": 2.0}
CHANNELS = ("web", "app", "branch")
CHANNEL_P = (0.5, 0.35, 0.15)
ERROR_SHARE = 0.005
CALLERS = 50
TICK_S = 1.0
LAKE_FLUSH_S = 10.0
POLL_S = 0.05

Message = tuple[bytes, bytes]  # (key, value) as the gateway sends them


# --------------------------------------------------------------------------- workload


class Population:
    """The training distribution of a small credit model (as in the monitor's tests)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def rows(self, n: int) -> list[dict[str, Any]]:
        cols = {f: self.rng.normal(MEANS[f], STDS[f], n).round(4).tolist() for f in FEATURES}
        channel = self.rng.choice(CHANNELS, n, p=CHANNEL_P).tolist()
        return [{**{f: cols[f][i] for f in FEATURES}, "channel": channel[i]} for i in range(n)]

    @staticmethod
    def label(row: dict[str, Any]) -> int:
        return int(row["income"] / STDS["income"] + row["balance"] / STDS["balance"] > 8.33)


def registered(model: str, seed: int) -> ModelRegistered:
    """A version with the reference profile the registry would attach to it."""
    train = Population(seed).rows(3000)
    profile = reference_profile(
        {f: [r[f] for r in train] for f in (*FEATURES, "channel")},
        categorical={"channel"},
        predictions=[Population.label(r) for r in train],
        predictions_categorical=True,
    )
    return ModelRegistered(
        model=model,
        version=1,
        team="bench",
        flavor="sklearn",
        task="classification",
        artifact_uri=f"file:///tmp/{model}/1.skops",
        sha256=f"{1:064x}",
        size_bytes=1024,
        signature=Signature(
            inputs=[
                *(FieldSpec(name=f) for f in FEATURES),
                FieldSpec(name="channel", type="category", categories=list(CHANNELS)),
            ]
        ),
        metrics={"accuracy": 0.95, "f1": 0.94},
        reference_profile=profile,
        registered_by="bench",
    )


def build_messages(names: list[str], n_events: int, rows_per_request: int, seed: int) -> list[Message]:
    """Gateway-shaped events: ``InferenceLogged`` in a CloudEvent, keyed by model."""
    rng = np.random.default_rng(seed)
    rows = Population(seed + 1).rows(n_events * rows_per_request)
    models = rng.integers(0, len(names), n_events).tolist()
    latencies = rng.lognormal(np.log(4.0), 0.5, n_events).round(3).tolist()
    errors = (rng.random(n_events) < ERROR_SHARE).tolist()
    callers = [rng.bytes(8).hex() for _ in range(CALLERS)]
    caller_of = rng.integers(0, CALLERS, n_events).tolist()
    now = datetime.now(UTC)
    out: list[Message] = []
    for i in range(n_events):
        inputs = rows[i * rows_per_request : (i + 1) * rows_per_request]
        name = names[models[i]]
        payload = InferenceLogged(
            request_id=uuid.uuid4().hex,
            model=name,
            version=1,
            inputs=inputs,
            outputs=None if errors[i] else [Population.label(r) for r in inputs],
            latency_ms=latencies[i],
            status="error" if errors[i] else "ok",
            status_code=500 if errors[i] else 200,
            error="RuntimeError: replica unavailable" if errors[i] else None,
            caller=callers[caller_of[i]],
            timestamp=now,
        )
        out.append((name.encode(), make_event(TOPIC, payload, source="/bench").to_bytes()))
    return out


# --------------------------------------------------------------------------- broker


@contextlib.contextmanager
def broker(workdir: Path, label: str) -> Iterator[EmbeddedBroker]:
    """A fresh memory-only broker with every catalogue topic, stopped whatever happens."""
    b = EmbeddedBroker(log_file=workdir / f"tansu-{label}.log")
    # Its own session: a Ctrl-C to the bench must reach our ``finally``, not the broker first.
    b.start(new_session=True)
    try:
        asyncio.run(ensure_topics(b.bootstrap))
        yield b
    finally:
        b.stop()


async def produce(bootstrap: str, messages: list[Message]) -> float:
    """Pre-produce everything; returns events/s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        t0 = time.perf_counter()
        futures = [await producer.send(TOPIC.value, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- measurements


@dataclass
class Timing:
    """A consumer run: from start, and from the first event it counted."""

    events: int
    started: float
    first_at: float | None = None
    first_count: int = 0
    done_at: float | None = None
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def seen(self, count: int) -> None:
        if self.first_at is None and count:
            self.first_at, self.first_count = time.perf_counter(), count

    def as_dict(self) -> dict[str, Any]:
        end = self.done_at or time.perf_counter()
        counted = self.extra.get("counted", self.events)
        total = end - self.started
        steady = end - self.first_at if self.first_at else None
        return {
            "events": self.events,
            "counted": counted,
            "timed_out": self.timed_out,
            "wall_s": round(total, 3),
            "join_s": round(self.first_at - self.started, 3) if self.first_at else None,
            "events_s_incl_join": counted / total if total > 0 else None,
            "events_s": (counted - self.first_count) / steady if steady else None,
            **self.extra,
        }


async def measure_raw(bootstrap: str, n: int, timeout_s: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        TOPIC.value,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_bytes=64 * 2**20,
        max_partition_fetch_bytes=16 * 2**20,
    )
    timing = Timing(events=n, started=time.perf_counter())
    await consumer.start()
    count = 0
    try:
        while count < n:
            if time.perf_counter() - timing.started > timeout_s:
                timing.timed_out = True
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            count += sum(len(records) for records in batches.values())
            timing.seen(count)
            if batches:
                await consumer.commit()  # as the monitor does after every poll
        timing.done_at = time.perf_counter()
    finally:
        await consumer.stop()
    timing.extra["counted"] = count
    return timing.as_dict()


def engine_settings() -> EngineSettings:
    """The service's defaults (``MonitorSettings`` without the environment)."""
    return MonitorSettings.model_construct().engine_settings()


@contextlib.asynccontextmanager
async def monitor_engine(
    workdir: Path, registrations: list[ModelRegistered], *, lake: bool
) -> AsyncIterator[MonitorEngine]:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{workdir / 'monitor.db'}")
    try:
        await db.migrate(MIGRATIONS)
        engine = MonitorEngine(
            MonitorStore(db),
            settings=engine_settings(),
            lake=InferenceLake(LakeSettings(uri=f"file://{workdir / 'lake'}")) if lake else None,
        )
        for reg in registrations:
            await engine.on_model_registered(str(uuid.uuid4()), reg)
        yield engine
    finally:
        await db.dispose()


class GcPauses:
    """Time the interpreter spends in cyclic garbage collection (a cost cProfile does not show)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class Periodic:
    """A timer task like the service's (sleep, then run the body), that finishes the body it is in
    when stopped: a lake flush cut short would leave its thread writing behind our back."""

    def __init__(self, interval_s: float, body: Callable[[], Awaitable[object]]) -> None:
        self.interval_s = interval_s
        self.body = body
        self.runs: list[tuple[float, float]] = []  # (started at, seconds)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
                return
            t0 = time.perf_counter()
            await self.body()
            self.runs.append((t0, time.perf_counter() - t0))

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    def summary(self, since: float, until: float) -> dict[str, Any]:
        runs = [(t, s) for t, s in self.runs if since <= t <= until]
        starts = [since, *(t for t, _ in runs), until]
        return {
            "runs": len(runs),
            "max_ms": round(max((s for _, s in runs), default=0.0) * 1000, 1),
            "longest_gap_s": round(max(b - a for a, b in itertools.pairwise(starts)), 2),
        }


class LoopLag:
    """How late a 100 ms sleep wakes up: how long the consumer holds the event loop."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.1)
            self.lags.append(time.perf_counter() - t0 - 0.1)

    async def stop(self) -> dict[str, Any]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lags = sorted(self.lags) or [0.0]
        return {
            "p50_ms": round(lags[len(lags) // 2] * 1000, 1),
            "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1),
            "max_ms": round(lags[-1] * 1000, 1),
        }


async def measure_monitor(
    bootstrap: str,
    n: int,
    registrations: list[ModelRegistered],
    workdir: Path,
    *,
    lake: bool,
    timeout_s: float,
) -> dict[str, Any]:
    async with monitor_engine(workdir, registrations, lake=lake) as engine:
        store, inference_lake = engine.store, engine.lake

        async def tick() -> None:  # what the service's timer does
            await engine.tick()
            async with store.transaction() as s:
                await store.alerts(s, state="firing", limit=10_000)

        async def flush() -> None:
            if inference_lake is not None and inference_lake.buffered:
                await asyncio.to_thread(inference_lake.flush)

        consumer = monitor_consumer(bootstrap, engine, max_records=2000)
        # The service starts its timers first and the consumer beside them.
        ticker, flusher, lag = Periodic(TICK_S, tick), Periodic(LAKE_FLUSH_S, flush), LoopLag()
        timing = Timing(events=n, started=time.perf_counter())
        await consumer.start()
        timing.extra["consumer_start_s"] = round(time.perf_counter() - timing.started, 3)
        loop_lag: dict[str, Any] = {}
        try:
            with GcPauses() as gc_pauses:
                cpu0 = time.process_time()
                while engine.counters.events < n:
                    if time.perf_counter() - timing.started > timeout_s:
                        timing.timed_out = True
                        break
                    await asyncio.sleep(POLL_S)
                    timing.seen(engine.counters.events)
                timing.done_at = time.perf_counter()
                cpu = time.process_time() - cpu0
            loop_lag = await lag.stop()
            rows_flushed_during_run = inference_lake.rows_written if inference_lake else 0
            # Let the last poll's commit finish: stopping mid-commit leaves a failing commit task.
            await asyncio.sleep(0.7)
        finally:
            await ticker.stop()
            await flusher.stop()
            await consumer.stop()
        final_flush_s = 0.0
        if inference_lake is not None:
            t0 = time.perf_counter()
            await asyncio.to_thread(inference_lake.flush)
            final_flush_s = time.perf_counter() - t0
        c = engine.counters
        # The timers' view of the consumption itself (join excluded).
        since, until = timing.first_at or timing.started, timing.done_at
        timing.extra.update(
            counted=c.events,
            rows=c.rows,
            drift_windows=c.drift_windows,
            drifted_windows=c.drifted_windows,
            ticks=ticker.summary(since, until),
            lake_flushes=flusher.summary(since, until) if inference_lake else None,
            lake_rows_flushed_during_run=rows_flushed_during_run if inference_lake else None,
            lake_final_flush_s=round(final_flush_s, 3),
            lake_rows_written=inference_lake.rows_written if inference_lake else None,
            lake_rows_dropped=inference_lake.rows_dropped if inference_lake else None,
            loop_lag=loop_lag,
            cpu_s_bench_process=round(cpu, 2),
            gc_s=round(gc_pauses.seconds, 3),
            gc_collections_by_generation=gc_pauses.collections,
        )
        out = timing.as_dict()
        if inference_lake is not None and out["events_s"]:
            # Rows still buffered at the end cost a flush too: the rate with every row in Parquet.
            steady = (c.events - timing.first_count) / out["events_s"]
            out["events_s_lake_flushed"] = (c.events - timing.first_count) / (steady + final_flush_s)
        out["cpu_us_per_event"] = round(cpu / max(c.events, 1) * 1e6, 1)
        out["gc_us_per_event"] = round(gc_pauses.seconds / max(c.events, 1) * 1e6, 1)
        out["rows_s"] = out["events_s"] * c.rows / max(c.events, 1) if out["events_s"] else None
        return out


# --------------------------------------------------------------------------- in-process profile


def _hot_spots(profiler: cProfile.Profile, top: int) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = [
        {
            "function": _short(filename, func) if filename == "~" else f"{_short(filename)}:{line}({func})",
            "calls": calls,
            "tottime_s": round(tottime, 3),
            "cumtime_s": round(cumtime, 3),
            "self_share": round(tottime / total, 3) if total else None,
        }
        for (filename, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    return {
        "total_s": round(total, 3),
        "by_self_time": sorted(rows, key=lambda r: -r["tottime_s"])[:top],
        "by_cumulative_time": sorted(rows, key=lambda r: -r["cumtime_s"])[: top * 2],
    }


def _best_of(runs: int, body: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Time steps without the collector: its pauses land on whichever step allocates when a
    threshold is crossed, and are measured on their own."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _pipeline(
    batches: list[list[bytes]], registrations: list[ModelRegistered], workdir: Path, *, lake: bool
) -> dict[str, float]:
    """Decode, ingest and settle batch by batch as ``BatchConsumer`` does, then flush the lake."""
    n = sum(len(batch) for batch in batches)
    async with monitor_engine(workdir, registrations, lake=lake) as engine:
        decode_s = ingest_s = settle_s = flush_s = 0.0
        with GcPauses() as pauses:
            for batch in batches:
                t0 = time.perf_counter()
                events = [parse_event(TOPIC, v).data for v in batch]
                t1 = time.perf_counter()
                engine.ingest(events)
                t2 = time.perf_counter()
                await engine.settle()
                decode_s += t1 - t0
                ingest_s += t2 - t1
                settle_s += time.perf_counter() - t2
            if engine.lake is not None:
                t0 = time.perf_counter()
                engine.lake.flush()
                flush_s = time.perf_counter() - t0
        return {
            "decode_us_per_event": decode_s / n * 1e6,
            "ingest_us_per_event": ingest_s / n * 1e6,
            "settle_us_per_event": settle_s / n * 1e6,
            "lake_flush_us_per_event": flush_s / n * 1e6,
            "total_us_per_event": (decode_s + ingest_s + settle_s + flush_s) / n * 1e6,
            "gc_us_per_event": pauses.seconds / n * 1e6,
            "drift_windows": engine.counters.drift_windows,
        }


async def profile_engine(
    messages: list[Message], registrations: list[ModelRegistered], workdir: Path, *, top: int
) -> dict[str, Any]:
    """Where the time goes without the broker: each step's cost per event with the collector off
    (best of two), the same pipeline with it on (what the collector adds), and cProfile hot spots
    of ``parse_event`` and of ``ingest`` + ``settle`` + flush on pre-decoded batches."""
    values = [value for _, value in messages]
    n = len(values)
    batches = [values[i : i + 2000] for i in range(0, n, 2000)]
    envelope = CloudEvent[InferenceLogged]  # type: ignore[type-arg]

    def decode_cached() -> None:
        for batch in batches:  # each batch dropped before the next, as in the consumer
            [envelope.model_validate_json(v) for v in batch]

    out: dict[str, Any] = {"events": n}
    with collector_off():
        # The same validation with the parametrised envelope class looked up once, for reference.
        out["decode_cached_envelope_us_per_event"] = _best_of(2, decode_cached) / n * 1e6
    for label, lake in (("no_lake", False), ("lake", True)):
        best: dict[str, float] = {}
        for attempt in range(2):  # best of two: a 2-core box shared with other work is noisy
            with collector_off():
                cell = await _pipeline(batches, registrations, workdir / f"{label}-{attempt}", lake=lake)
            if not best or cell["total_us_per_event"] < best["total_us_per_event"]:
                best = cell
        with_gc = await _pipeline(batches, registrations, workdir / f"{label}-gc", lake=lake)
        best["total_with_gc_us_per_event"] = with_gc["total_us_per_event"]
        best["gc_us_per_event"] = with_gc["gc_us_per_event"]
        out[label] = best
    out["decode_us_per_event"] = min(out[k]["decode_us_per_event"] for k in ("lake", "no_lake"))
    with collector_off():
        profiler = cProfile.Profile()
        profiler.enable()
        for batch in batches:
            [parse_event(TOPIC, v) for v in batch]
        profiler.disable()
        out["decode_profile"] = _hot_spots(profiler, 8)
        # The engine, lake on (the service's default), on a fresh engine; decoding not profiled.
        async with monitor_engine(workdir / "cprofile", registrations, lake=True) as engine:
            profiler = cProfile.Profile()
            for batch in batches:
                events = [parse_event(TOPIC, v).data for v in batch]
                profiler.enable()
                engine.ingest(events)
                await engine.settle()
                profiler.disable()
            assert engine.lake is not None
            profiler.enable()
            engine.lake.flush()
            profiler.disable()
    out["engine_profile"] = _hot_spots(profiler, top)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    (workdir / "profile.txt").write_text(text.getvalue())
    return out


def _short(filename: str, func: str = "") -> str:
    if filename == "~":  # a builtin: "<method 'x' of 'a.b.C' objects>" -> "C.x"
        match = re.fullmatch(r"<method '(\w+)' of '(?:[\w.]*\.)?(\w+)' objects>", func)
        return f"{match[2]}.{match[1]}" if match else func.removeprefix("<built-in method ").rstrip(">")
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --------------------------------------------------------------------------- run


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.out: dict[str, Any] = {}
        self.notes: list[str] = []
        self.names = [f"bench-credit-{i:02d}" for i in range(args.models)]

    def run(self) -> None:
        args = self.args
        t0 = time.perf_counter()
        registrations = [registered(name, seed=1000 + i) for i, name in enumerate(self.names)]
        one_row = build_messages(self.names, args.events, 1, seed=7)
        ten_rows = []
        if not args.skip_ten_rows:
            ten_rows = build_messages(self.names, max(args.events // 10, 1), 10, seed=8)
        self.out["prepare_s"] = round(time.perf_counter() - t0, 1)
        # The collector untracks tuples of bytes once it has seen them: after this, the pre-built
        # messages cost its scans nothing, and the heap it walks is the imports', as in the service.
        gc.collect()
        if not args.gc_defaults:
            tune_garbage_collector()  # what the monitor does after start-up
        self.out["bytes_per_event"] = {
            "1_row": sum(len(v) for _, v in one_row) / len(one_row),
            **({"10_rows": sum(len(v) for _, v in ten_rows) / len(ten_rows)} if ten_rows else {}),
        }
        print(
            f"  {len(registrations)} models registered; {len(one_row):,} events "
            f"({self.out['bytes_per_event']['1_row']:.0f} B each) built in {self.out['prepare_s']}s",
            flush=True,
        )
        runs: dict[str, dict[str, Any]] = {}
        self.out["runs"] = runs
        cells: list[tuple[str, list[Message], bool]] = [("monitor", one_row, True)]
        if not args.skip_no_lake:
            cells.append(("no-lake", one_row, False))
        if ten_rows:
            cells.append(("10-rows", ten_rows, True))
        for i, (label, messages, lake) in enumerate(cells):
            with broker(self.workdir, label) as b:
                rate = asyncio.run(produce(b.bootstrap, messages))
                print(f"  [{label}] broker {b.bootstrap}: {len(messages):,} events produced at {rate:,.0f}/s")
                if i == 0:  # the baseline reads the same topic first, in its own group
                    runs["raw"] = asyncio.run(measure_raw(b.bootstrap, len(messages), args.timeout))
                    self.report_cell("raw", runs["raw"])
                runs[label] = asyncio.run(
                    measure_monitor(
                        b.bootstrap,
                        len(messages),
                        registrations,
                        self.workdir / label,
                        lake=lake,
                        timeout_s=args.timeout,
                    )
                )
                runs[label]["produce_events_s"] = rate
                self.report_cell(label, runs[label])
                if runs[label]["timed_out"]:
                    self.notes.append(f"{label}: timed out after {args.timeout:.0f}s; rates are partial")
        drift = runs["monitor"]["drift_windows"]
        if drift <= 0:
            raise AssertionError("no drift window was scored: drift scoring did not run")
        missed = (runs["monitor"]["events_s"] or 0) < TARGET_EVENTS_S
        if args.profile or missed:
            sample = one_row[: min(len(one_row), args.profile_events)]
            print(f"  profiling the engine in-process on {len(sample):,} pre-decoded events ...", flush=True)
            self.out["profile"] = asyncio.run(
                profile_engine(sample, registrations, self.workdir / "profile", top=args.profile_top)
            )

    @staticmethod
    def report_cell(label: str, r: dict[str, Any]) -> None:
        extra = ""
        if "drift_windows" in r:
            extra = (
                f", drift windows {r['drift_windows']}, {r['cpu_us_per_event']} CPU-us/event "
                f"(GC {r['gc_us_per_event']}), ticks {r['ticks']['runs']} (longest gap "
                f"{r['ticks']['longest_gap_s']} s), loop lag max {r['loop_lag']['max_ms']} ms"
            )
        print(
            f"  [{label}] {r['counted']:,} events: {r['events_s'] or 0:,.0f}/s after the first event, "
            f"{r['events_s_incl_join'] or 0:,.0f}/s incl. join ({r['join_s']}s){extra}",
            flush=True,
        )


def derived(out: dict[str, Any]) -> dict[str, Any]:
    runs = out.get("runs", {})
    raw = runs.get("raw", {}).get("events_s")
    d: dict[str, Any] = {"target_events_s": TARGET_EVENTS_S}
    for label in ("monitor", "no-lake", "10-rows"):
        r = runs.get(label)
        if not r or not r.get("events_s"):
            continue
        if raw:
            d[f"{label}_over_raw"] = r["events_s"] / raw
        d[f"{label}_over_target"] = r["events_s"] / TARGET_EVENTS_S
    if runs.get("monitor", {}).get("events_s") and runs.get("no-lake", {}).get("events_s"):
        d["lake_cost_share"] = 1 - runs["monitor"]["events_s"] / runs["no-lake"]["events_s"]
    if "monitor" in runs and runs["monitor"].get("events_s") is not None:
        d["verdict"] = "PASS" if runs["monitor"]["events_s"] >= TARGET_EVENTS_S else "MISS"
    return d


def print_report(out: dict[str, Any], d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    cfg = out["config"]
    t = Table(
        title=f"Monitor ingest: {cfg['events']:,} events, {cfg['models']} models, through Tansu on loopback"
    )
    for col in (
        "consumer",
        "events/s",
        "incl. join",
        "lake flushed",
        "rows/s",
        "x raw",
        "drift windows",
        "vs 20k/s",
    ):
        t.add_column(col, justify="left" if col == "consumer" else "right")
    raw = out["runs"].get("raw", {}).get("events_s")
    for label, r in out.get("runs", {}).items():
        rate = r.get("events_s") or 0.0
        one_row = label in ("monitor", "no-lake")  # the target is set for 1 row per request
        verdict = ("PASS" if rate >= TARGET_EVENTS_S else "MISS") if one_row else ""
        t.add_row(
            label,
            f"{rate:,.0f}",
            f"{r.get('events_s_incl_join') or 0:,.0f}",
            f"{r['events_s_lake_flushed']:,.0f}" if r.get("events_s_lake_flushed") else "",
            f"{r['rows_s']:,.0f}" if r.get("rows_s") else "",
            f"{rate / raw:.3f}" if raw and label != "raw" else "1",
            str(r.get("drift_windows", "")),
            verdict + (" (timed out)" if r.get("timed_out") else ""),
        )
    console.print(t)
    p = out.get("profile")
    if p:
        b = Table(title=f"In-process cost per event (us), {p['events']:,} events")
        b.add_column("step")
        b.add_column("lake", justify="right")
        b.add_column("no lake", justify="right")
        cached = f"{p['decode_cached_envelope_us_per_event']:.1f}"
        for key, name in (
            ("decode_us_per_event", "decode (parse_event)"),
            ("ingest_us_per_event", "engine.ingest"),
            ("settle_us_per_event", "engine.settle"),
            ("lake_flush_us_per_event", "lake flush"),
            ("total_us_per_event", "total, collector off"),
            ("total_with_gc_us_per_event", "total, collector on"),
            ("gc_us_per_event", "  of which GC pauses"),
        ):
            b.add_row(name, f"{p['lake'][key]:.1f}", f"{p['no_lake'][key]:.1f}")
        b.add_row("decode, envelope class looked up once", cached, cached)
        console.print(b)
        for key, what in (("decode_profile", "parse_event"), ("engine_profile", "ingest+settle+flush")):
            prof = p[key]
            h = Table(title=f"Hot spots by self time: {what} (cProfile, collector off, {prof['total_s']} s)")
            for col in ("function", "calls", "self s", "share", "cum s"):
                h.add_column(col, justify="left" if col == "function" else "right")
            for row in prof["by_self_time"]:
                h.add_row(
                    row["function"][-70:],
                    f"{row['calls']:,}",
                    f"{row['tottime_s']:.3f}",
                    f"{row['self_share']:.1%}",
                    f"{row['cumtime_s']:.3f}",
                )
            console.print(h)


def machine() -> dict[str, Any]:
    """Like harness.machine, without importing Ray (this bench does not use it)."""
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
        "commit": commit,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="30,000 events: a smoke run")
    parser.add_argument("--skip-no-lake", action="store_true", help="skip the lake-off cell")
    parser.add_argument("--skip-ten-rows", action="store_true", help="skip the 10-rows cell")
    parser.add_argument("--timeout", type=float, default=90.0, help="per consumer measurement, seconds")
    parser.add_argument("--profile", action="store_true", help="profile the engine even on PASS")
    parser.add_argument("--profile-events", type=int, default=50_000)
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument(
        "--gc-defaults",
        action="store_true",
        help="keep Python's default collector settings instead of the monitor's tuning "
        "(fleet_monitor.app.tune_garbage_collector), to see what the tuning buys",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (SQLite, lake, logs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.events = min(args.events, 30_000)
    sigterm_as_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-monitor-"))
    print(f"bench work dir (logs): {workdir}", flush=True)
    bench = Bench(args, workdir)
    outcome = run_guarded(bench.run, workdir, "interrupted; the broker has been stopped")
    if outcome is None:
        return 130
    started, error = outcome
    doc: dict[str, Any] = {
        "bench": "monitor",
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
        "config": {
            "events": args.events,
            "models": args.models,
            "versions_per_model": 1,
            "rows_per_request": 1,
            "ten_rows_events": None if args.skip_ten_rows else args.events // 10,
            "features": "4 numeric + 1 categorical; class-label output; lognormal latency",
            "error_share": ERROR_SHARE,
            "callers": CALLERS,
            "max_records": 2000,
            "partitions": 3,
            "tick_s": TICK_S,
            "lake_flush_s": LAKE_FLUSH_S,
            "database": "sqlite+aiosqlite",
            "gc_threshold": list(gc.get_threshold()),
            "gc_tuned": not args.gc_defaults,
            "engine": "service defaults (drift window 500 rows, 10 s buckets)",
        },
        **bench.out,
    }
    doc["ratios"] = derived(bench.out)
    doc["notes"], doc["error"] = bench.notes, error
    if bench.out.get("runs"):
        print_report(doc, doc["ratios"])
        print(f"verdict: {doc['ratios'].get('verdict', '-')} (target {TARGET_EVENTS_S:,.0f} events/s)")
    for note in bench.notes:
        print(f"note: {note}")
    out = args.out or RESULTS_DIR / f"monitor{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results: {out}")
    if not args.keep and error is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
