"""Each image's Python environment, built exactly as its Dockerfile's builder stage builds it
(the same ``uv sync`` line, against uv.lock), can run what the image runs.

No Docker engine runs here, so this is the part of an image build that can be reproduced: a
dependency missing from a package's own ``pyproject.toml`` (the workspace's ``.venv`` has every
package, so nothing else would notice) fails the import of the service's app, or leaves the Ray
drivers without the ``ray`` command their entry point starts. The environments are checked from a
directory outside the repository, as in the image, which holds no source tree."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from support.deploy import DOCKER_DIR, ROOT, SERVICES, command, dockerfile, of

pytestmark = [pytest.mark.slow, pytest.mark.extended]

IMAGES = sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER_DIR.glob("*.Dockerfile"))
# What must import in each image beyond its command's module: a service's app (and so every
# dependency of the service); on Ray nodes, the runtimes replicas load and the code tasks run.
IMPORTS = {name: [f"fleet_{name}.app"] for name in SERVICES} | {
    # The gateway loads busy small pool models itself (fleet_gateway.local) with the pool's runtimes.
    "gateway": ["fleet_gateway.app", "fleet_serving.memory", "sklearn", "skops.io", "onnxruntime"],
    "ray": [
        "fleet_serving.deployments",
        "fleet_serving.runtime_info",
        "fleet_retrainer.training",
        "ray.serve",
    ],
}


def sync_args(image: str) -> list[str]:
    (run,) = [r for r in of(dockerfile(image), "RUN") if re.search(r"\buv sync\b", r)]
    words = shlex.split(run[run.index("uv sync") :])
    assert "--frozen" in words and "--no-dev" in words
    return words[2:]


def uv_command() -> list[str]:
    """uv itself: the one running this (``uv run`` sets UV), on PATH, or the Makefile's
    ``python3 -m uv`` with a python3 that is not this venv's (which has no uv module)."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    if shutil.which("uv"):
        return ["uv"]
    for python in ("/usr/local/bin/python3", "/usr/bin/python3", shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.fail("uv not found (the Makefile installs it: make install)")


def build_environment(image: str, target: Path) -> Path:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(target), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    sync = [*uv_command(), "sync", *sync_args(image), "--quiet"]
    result = subprocess.run(sync, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(sync)}\n{result.stderr[-3000:]}"
    return target


def run_in(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("image", IMAGES)
def test_the_image_environment_runs_its_command(image: str, tmp_path: Path) -> None:
    venv = build_environment(image, tmp_path / "venv")
    outside = tmp_path / "workdir"
    outside.mkdir()
    python = str(venv / "bin" / "python")

    runs = command(dockerfile(image))
    modules = [runs[i + 1] for i, word in enumerate(runs) if word == "-m"]
    executables = [word for word in runs[:1] if word not in {"python"}]
    imports = [*modules, *IMPORTS.get(image, [])]
    probe = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = run_in(venv, outside, python, "-c", probe, *imports)
    assert result.returncode == 0, f"{image}: {imports}\n{result.stderr[-3000:]}"
    here = run_in(venv, outside, python, "-c", "import fleet_core, sys; print(fleet_core.__file__)")
    assert str(venv) in here.stdout, "workspace code comes from the environment, not a source tree"

    for executable in executables:
        assert (venv / "bin" / executable).exists(), f"{image}: its command needs `{executable}`"
    if "fleet_core.raynode" in modules:
        assert (venv / "bin" / "ray").exists(), f"{image}: a Ray driver's entry point starts `ray`"
        version = run_in(venv, outside, str(venv / "bin" / "ray"), "--version")
        assert version.returncode == 0, version.stderr[-2000:]


def test_drivers_and_ray_nodes_get_the_same_ray() -> None:
    """A Ray driver and the cluster must run the same Ray: every image resolves it from one lock."""
    lock = (ROOT / "uv.lock").read_text()
    versions = set(re.findall(r'\[\[package\]\]\nname = "ray"\nversion = "([^"]+)"', lock))
    assert len(versions) == 1, versions
