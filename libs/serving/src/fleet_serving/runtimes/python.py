"""Custom Python models: a zip archive with a ``model.py`` defining ``class Model``.

Archive layout (what the registry stores as ``model.zip``)::

    model.py          # class Model: load(self) -> None; predict(self, rows) -> list
    anything_else/    # helper modules (import them relatively: ``from . import helpers``), data files

The archive is unpacked within bounds (``ArchiveLimits``: total uncompressed size, member count; no
member outside its directory, no links) once per sha256 under
``FLEET_HOME/serving/python/<sha256>`` and imported as its own package, so two versions with the
same module names never meet. Before ``load()`` is called the instance gets ``artifact_dir`` (the
unpacked directory, for data files) and ``spec`` (the ``ModelSpec``). ``predict`` receives the
validated rows (``list[dict]``) and returns one JSON-able value per row.

This runs arbitrary code inside the replica: the registry only accepts such versions from
publishers with the deployer role, and replicas refuse them unless ``FLEET_SERVING_ALLOW_PYTHON``
allows it (default: on in embedded mode, off in production). Such a version never shares a
process with other teams' models (the deployer gives it its own deployment, and the pool refuses
it), and its replicas get no object-store credentials: the deployer passes the verified archive.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_core.schemas import JsonValue
from fleet_core.serving import ModelSpec
from fleet_serving.errors import ModelLoadError, PredictionError, UntrustedArtifactError
from fleet_serving.runtimes.base import Rows, Runtime, to_json

ENTRY_MODULE = "model"
ENTRY_CLASS = "Model"


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on unpacking one archive, so a small upload cannot fill a replica's disk."""

    max_unpacked_bytes: int = 256 * 2**20
    """Total uncompressed size, counted while inflating (a member's declared size may lie)."""
    max_members: int = 10_000


_CHUNK = 2**20
_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(detail: str) -> ModelLoadError:
    return ModelLoadError(f"the python archive {detail}", field="artifact")


def _member_path(root: Path, info: zipfile.ZipInfo) -> Path:
    """Where a member goes, or a refusal: no absolute path, drive, '..' component or link."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/"):
        raise _refuse(f"has a member outside its directory: {info.filename!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refuse(f"has a symbolic link member: {info.filename!r}")
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise _refuse(f"has a member outside its directory: {info.filename!r}")
    return path


def _extract(archive: zipfile.ZipFile, root: Path, limits: ArchiveLimits) -> None:
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise _refuse(f"has {len(members)} members; at most {limits.max_members} are allowed")
    declared = sum(m.file_size for m in members)
    if declared > limits.max_unpacked_bytes:
        raise _refuse(f"holds {declared} bytes uncompressed; at most {limits.max_unpacked_bytes} are allowed")
    written = 0
    for info in members:
        path = _member_path(root, info)
        if info.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, path.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > limits.max_unpacked_bytes:
                    raise _refuse(f"inflates past {limits.max_unpacked_bytes} bytes uncompressed; refused")
                sink.write(chunk)


def unpack(artifact: bytes, target: Path, limits: ArchiveLimits | None = None) -> Path:
    """Unpack once, within ``limits``: into a temp dir beside ``target``, then renamed into place
    (replicas race). A refused archive leaves nothing behind."""
    if (target / f"{ENTRY_MODULE}.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(artifact)) as archive:
            _extract(archive, tmp, limits or ArchiveLimits())
        if not (tmp / f"{ENTRY_MODULE}.py").is_file():
            raise ModelLoadError(f"the python archive has no top-level {ENTRY_MODULE}.py", field="artifact")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / f"{ENTRY_MODULE}.py").is_file():
                raise
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"a python artifact must be a zip archive: {exc}", field="artifact") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class PythonRuntime(Runtime):
    """Runs a publisher's ``Model`` class."""

    flavor = "python"

    def __init__(
        self,
        spec: ModelSpec,
        artifact: bytes,
        *,
        allowed: bool,
        unpack_root: Path,
        limits: ArchiveLimits | None = None,
    ) -> None:
        super().__init__(spec, artifact)
        if not allowed:
            raise UntrustedArtifactError(
                f"{spec.key}: python-flavor models are disabled on this serving cluster "
                "(set FLEET_SERVING_ALLOW_PYTHON=true to allow trusted publishers' code)",
                field="flavor",
            )
        self.unpack_root = unpack_root
        self.limits = limits or ArchiveLimits()
        self.model: Any = None

    def _load(self, artifact: bytes) -> None:
        directory = unpack(artifact, self.unpack_root / self.spec.sha256, self.limits)
        package = f"_fleet_python_model_{self.spec.sha256[:16]}"
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(directory)]
            sys.modules[package] = module
        try:
            entry = importlib.import_module(f"{package}.{ENTRY_MODULE}")
            cls = getattr(entry, ENTRY_CLASS)
        except Exception as exc:
            raise ModelLoadError(
                f"{self.spec.key}: could not import {ENTRY_MODULE}.{ENTRY_CLASS}: {exc}"
            ) from exc
        model = cls()
        model.artifact_dir = directory
        model.spec = self.spec
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(f"{self.spec.key}: {ENTRY_CLASS} has no predict(rows)")
        load = getattr(model, "load", None)
        if callable(load):
            try:
                load()
            except Exception as exc:
                raise ModelLoadError(f"{self.spec.key}: {ENTRY_CLASS}.load() failed: {exc}") from exc
        self.model = model

    def _predict(self, rows: Rows) -> list[JsonValue]:
        try:
            out = self.model.predict([dict(r) for r in rows])
        except (ValueError, TypeError, KeyError) as exc:
            raise PredictionError(f"{self.spec.key}: the model refused the input: {exc}") from exc
        return [to_json(v) for v in out]
