"""How much memory a pool replica's models take: RSS readings around a load, and a warm-up.

A model is charged (``charge``) the replica's resident set size (RSS) just after its load minus
just before, floored by the artifact's size and by ``MIN_MODEL_BYTES``. An RSS delta alone is noisy
for small models: their objects often land in allocator arenas the process already holds (a delta
of 0, or below 0 when something else was freed meanwhile), and a delta includes whatever a
concurrent request allocated. The artifact size is a floor we can trust for the flavors the pool
serves: measured here, a loaded skops model takes ~0.7x its file, an onnxruntime session 4-5x.

Code that every model of a flavor shares is not any one model's cost: a replica imports it and
loads two throwaway models before it measures its empty RSS (``warm_up``), else the first real
model is charged the libraries and lazily imported modules (measured: +111 MB, and seconds the
first request would wait).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import importlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from fleet_core.schemas import FieldSpec, Signature
from fleet_core.serving import MIN_MODEL_BYTES, ModelSpec
from fleet_core.settings import FleetSettings
from fleet_serving.loading import aload_model
from fleet_serving.runtimes import Runtime

log = logging.getLogger("ray.serve")


def process_rss() -> int | None:
    """This process's resident set size in bytes (``/proc/self/statm``; psutil elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass  # no /proc (not Linux): psutil below
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # no psutil, or a platform it cannot read
        return None


def charge(rss_delta: int | None, artifact_bytes: int, floor: int = MIN_MODEL_BYTES) -> int:
    """What a freshly loaded model is charged: max(RSS delta, artifact size, floor)."""
    return max(rss_delta or 0, artifact_bytes, floor)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the heap an unloaded model freed back to the OS (glibc ``malloc_trim``, ~1 ms), so the
    replica's RSS follows its evictions instead of keeping the arenas.

    No ``gc.collect()``: a loaded model is freed by reference counting when the cache drops it
    (a full collection found a few dozen cyclic objects), and a full collection over a replica
    holding 500 small models takes 300-450 ms here, on the request path of the load that evicts."""
    if _TRIM is not None:
        _TRIM(0)


SHARED_LIBRARIES = (
    "pandas",
    "skops.io",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "onnxruntime",
)
"""Imported before the baseline (``import skops.io`` alone: ~92 MB, several seconds cold)."""


async def load_measured(spec: ModelSpec, settings: FleetSettings) -> tuple[Runtime, int]:
    """Load ``spec`` (``aload_model``) and the bytes to charge it (``charge``). Memory is trimmed on
    both sides: what the load freed again (the artifact's bytes, decompression buffers) goes back to
    the OS, so the delta is what the model keeps, not the load's peak. Loads measured this way must
    not overlap, or each is charged the other's."""
    release_memory()
    before = process_rss()
    runtime = await aload_model(spec, settings)
    release_memory()
    after = process_rss()
    delta = after - before if before is not None and after is not None else None
    return runtime, charge(delta, spec.size_bytes)


async def warm_up(settings: FleetSettings) -> None:
    """Import ``SHARED_LIBRARIES``, then load a throwaway linear model and forest twice each the
    way a pool loads a model (``aload_model``: artifact store, hash in a worker thread, load in a
    worker thread), so what a first load pulls in is in the baseline, not in the first model's
    charge: lazily imported modules, the worker threads and their malloc arenas (measured here:
    the first 1.2 MB forest of a replica warmed by imports alone still grew RSS by 6.5 MB; after
    this warm-up, by 1.2 MB)."""
    for name in SHARED_LIBRARIES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    try:
        with tempfile.TemporaryDirectory(prefix="fleet-warm-up-") as directory:
            for spec in _throwaway_models(Path(directory)):
                for _ in range(2):
                    runtime = await aload_model(spec, settings)
                    runtime.predict([{"x": 1.5}])
    except Exception:  # a warm-up is an optimisation of the accounting; never fail a replica on it
        log.exception("runtime warm-up failed; the first model loaded may be charged shared code")


def _throwaway_models(directory: Path) -> list[ModelSpec]:
    import pandas as pd
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    labels = [0, 0, 1, 1]
    specs = []
    for i, est in enumerate(
        (
            LogisticRegression().fit(frame, labels),
            RandomForestClassifier(n_estimators=4, random_state=0).fit(frame, labels),
        )
    ):
        data = sio.dumps(est)
        path = directory / f"warm-up-{i}.skops"
        path.write_bytes(data)
        specs.append(
            ModelSpec(
                model=f"warm-up-{i}",
                version=1,
                team="-",
                flavor="sklearn",
                artifact_uri=path.as_uri(),
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                signature=Signature(inputs=[FieldSpec(name="x", type="float")]),
            )
        )
    return specs
