"""Custom Python models: a zip archive with a ``model.py`` defining ``class Model``.

Archive layout (what the registry stores as ``model.zip``)::

    model.py          # class Model: load(self) -> None; predict(self, rows) -> list
    anything_else/    # helper modules (import them relatively: ``from . import helpers``), data files

The archive is unpacked once per sha256 under ``FLEET_HOME/serving/python/<sha256>`` and imported
as its own package, so two versions with the same module names never meet. Before ``load()`` is
called the instance gets ``artifact_dir`` (the unpacked directory, for data files) and ``spec``
(the ``ModelSpec``). ``predict`` receives the validated rows (``list[dict]``) and returns one
JSON-able value per row.

This runs arbitrary code inside the replica: the registry only accepts such versions from
publishers with the deployer role, and replicas refuse them unless ``FLEET_SERVING_ALLOW_PYTHON``
allows it (default: on in embedded mode, off in production).
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

from fleet_core.schemas import JsonValue
from fleet_core.serving import ModelSpec
from fleet_serving.errors import ModelLoadError, PredictionError, UntrustedArtifactError
from fleet_serving.runtimes.base import Rows, Runtime, to_json

ENTRY_MODULE = "model"
ENTRY_CLASS = "Model"


def unpack(artifact: bytes, target: Path) -> Path:
    """Unpack once: into a temp dir beside ``target``, then renamed into place (replicas race)."""
    if (target / f"{ENTRY_MODULE}.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(artifact)) as archive:
            archive.extractall(tmp)  # extractall drops absolute paths and '..' components
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

    def __init__(self, spec: ModelSpec, artifact: bytes, *, allowed: bool, unpack_root: Path) -> None:
        super().__init__(spec, artifact)
        if not allowed:
            raise UntrustedArtifactError(
                f"{spec.key}: python-flavor models are disabled on this serving cluster "
                "(set FLEET_SERVING_ALLOW_PYTHON=true to allow trusted publishers' code)",
                field="flavor",
            )
        self.unpack_root = unpack_root
        self.model: Any = None

    def _load(self, artifact: bytes) -> None:
        directory = unpack(artifact, self.unpack_root / self.spec.sha256)
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
