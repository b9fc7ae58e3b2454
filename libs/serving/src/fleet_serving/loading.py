"""From a ``ModelSpec`` to a loaded ``Runtime``: fetch the artifact, verify its sha256, deserialise.

The hash is checked before any deserialiser sees the bytes, so a swapped or corrupted object in
the store is refused instead of loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

from fleet_core.artifacts import artifact_store
from fleet_core.errors import NotFound
from fleet_core.serving import ModelSpec
from fleet_core.settings import FleetSettings
from fleet_serving.errors import ArtifactIntegrityError, ModelLoadError
from fleet_serving.runtimes import OnnxRuntime, PythonRuntime, Runtime, SklearnRuntime
from fleet_serving.runtimes.python import ArchiveLimits
from fleet_serving.settings import ServingSettings

T = TypeVar("T")


def _store_base(uri: str) -> str:
    """The store root to open for one artifact URI: its directory, or its bucket."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
        if not path.is_file():
            raise NotFound(f"no artifact at {uri}", field="artifact_uri")
        return path.parent.as_uri()
    if parsed.scheme == "s3":
        return f"s3://{parsed.netloc}"
    raise ValueError(f"unsupported artifact URI {uri!r}; use file:// or s3://")


async def fetch_artifact(uri: str, settings: FleetSettings) -> bytes:
    """The bytes at ``uri`` (``file://`` or ``s3://``), through the artifact store for its scheme."""
    return await artifact_store(_store_base(uri), settings).get(uri)


def verify_artifact(spec: ModelSpec, data: bytes) -> None:
    """Raise ``ArtifactIntegrityError`` unless ``data`` hashes to ``spec.sha256``."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ArtifactIntegrityError(spec.artifact_uri, spec.sha256, actual)


def runtime_for(spec: ModelSpec, data: bytes, settings: FleetSettings) -> Runtime:
    """The flavor's runtime over verified bytes, not yet loaded."""
    serving = ServingSettings.of(settings)
    if spec.flavor == "sklearn":
        return SklearnRuntime(spec, data, extra_trusted=serving.serving_trusted_types)
    if spec.flavor == "onnx":
        return OnnxRuntime(spec, data)
    if spec.flavor == "python":
        root = (
            Path(serving.serving_python_dir)
            if serving.serving_python_dir
            else serving.home / "serving" / "python"
        )
        limits = ArchiveLimits(
            max_unpacked_bytes=serving.serving_python_max_unpacked_mb * 2**20,
            max_members=serving.serving_python_max_members,
        )
        return PythonRuntime(spec, data, allowed=serving.python_allowed, unpack_root=root, limits=limits)
    raise ValueError(f"unknown flavor {spec.flavor!r}")


def load_verified(spec: ModelSpec, data: bytes, settings: FleetSettings) -> Runtime:
    """Verify bytes someone else fetched against ``spec.sha256``, then load them."""
    verify_artifact(spec, data)
    runtime = runtime_for(spec, data, settings)
    runtime.load()
    return runtime


MAX_HANDED_ARTIFACT_BYTES = 256 * 2**20
"""An archive the deployer hands to a replica travels in the deployment's init arguments."""


def fetch_for_replica(spec: ModelSpec, env: Mapping[str, str]) -> bytes:
    """The verified artifact of ``spec``, fetched with the store settings in ``env`` (the ``FLEET_*``
    variables the deployer would otherwise hand to replicas), for a replica that gets none."""
    settings = ServingSettings(
        **{k.removeprefix("FLEET_").lower(): v for k, v in env.items() if k.startswith("FLEET_S3_")},
        **({"home": env["FLEET_HOME"]} if "FLEET_HOME" in env else {}),
    )
    if spec.size_bytes > MAX_HANDED_ARTIFACT_BYTES:
        raise ModelLoadError(
            f"{spec.key}: a {spec.size_bytes}-byte archive is too large to hand to a replica "
            f"(at most {MAX_HANDED_ARTIFACT_BYTES})",
            field="artifact",
        )
    data = _run(fetch_artifact(spec.artifact_uri, settings))
    verify_artifact(spec, data)
    return data


async def aload_model(spec: ModelSpec, settings: FleetSettings) -> Runtime:
    """Fetch, verify and load ``spec``; the CPU-bound parts run in a worker thread."""
    data = await fetch_artifact(spec.artifact_uri, settings)
    await asyncio.to_thread(verify_artifact, spec, data)
    runtime = runtime_for(spec, data, settings)
    await asyncio.to_thread(runtime.load)
    return runtime


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from a thread that runs a loop: run the coroutine on a loop of its own elsewhere.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="fleet-load-model")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def load_model(spec: ModelSpec, settings: FleetSettings) -> Runtime:
    """Blocking ``aload_model``, for synchronous callers (tests, tools, a deployer thread)."""
    return _run(aload_model(spec, settings))
