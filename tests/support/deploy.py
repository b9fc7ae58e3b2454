"""For the deployment checks (tests/unit/deploy, tests/e2e/test_compose_commands.py): the repository
root, the deployable services, a Dockerfile reader, and external linters that skip locally when
missing but fail in CI, so a check never silently vanishes."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT_S = 120

DOCKER_DIR = ROOT / "deploy" / "docker"

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


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """The file's instructions, continuation lines joined, comments and parser directives dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return result


def of(path: Path, keyword: str) -> list[str]:
    return [i.arguments for i in instructions(path) if i.keyword == keyword]


def exec_form(arguments: str) -> list[str]:
    return re.findall(r'"((?:[^"\\]|\\.)*)"', arguments)


def dockerfile(image: str) -> Path:
    return DOCKER_DIR / f"{image}.Dockerfile"


def runtime_stage(path: Path) -> list[Instruction]:
    """The instructions of the final stage: what the image runs with."""
    found = instructions(path)
    last_from = max(i for i, instruction in enumerate(found) if instruction.keyword == "FROM")
    return found[last_from + 1 :]


def _last_exec_form(path: Path, keyword: str) -> list[str]:
    found = [exec_form(i.arguments) for i in runtime_stage(path) if i.keyword == keyword]
    return found[-1] if found else []


def entrypoint(path: Path) -> list[str]:
    return _last_exec_form(path, "ENTRYPOINT")


def cmd(path: Path) -> list[str]:
    return _last_exec_form(path, "CMD")


def command(path: Path) -> list[str]:
    """What the image runs: its ENTRYPOINT followed by its CMD."""
    return [*entrypoint(path), *cmd(path)]


def image_env(path: Path) -> dict[str, str]:
    """The runtime stage's ENV, as ``KEY=value`` pairs."""
    pairs = [w for i in runtime_stage(path) if i.keyword == "ENV" for w in shlex.split(i.arguments)]
    return dict(pair.split("=", 1) for pair in pairs)
