"""For the deployment checks (tests/unit/deploy): the repository root, the deployable services, and
external linters that skip locally when missing but fail in CI, so a check never silently vanishes."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT_S = 120

SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").is_file())
"""Workspace members under services/: each one is an image and a compose service."""


def find_tool(name: str, install_hint: str) -> str:
    """The tool's path (PATH, then this interpreter's venv); skips without it, fails when CI=true."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        reason = f"{name} is not installed ({install_hint})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return path


def run_tool(tool: str, *args: str, cwd: Path = ROOT) -> str:
    """Run ``tool`` and assert that it succeeds, showing its output when it does not; its stdout."""
    result = subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, (
        f"{Path(tool).name} {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return result.stdout


def settings_type(service: str) -> type[BaseSettings]:
    """The pydantic-settings class a service reads its ``FLEET_*`` environment into."""
    module = importlib.import_module(f"fleet_{service}.settings")
    return next(
        value
        for name, value in vars(module).items()
        if name.endswith("Settings") and getattr(value, "__module__", "") == module.__name__
    )
