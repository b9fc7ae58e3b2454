"""MLServer, the peer ``bench/serving.py`` measures the gateway against, in its own environment.

MLServer 1.7 does not start with uvloop >= 0.22 ("There is no current event loop") and needs
``uvloop<0.21``, while the services run current uvloop, so it cannot live in the workspace's
environment. It has its own uv project, ``bench/peers/`` (its own ``uv.lock``, not a workspace member;
ADR 0030): ``peers_env()`` syncs ``bench/peers/.venv`` to that lock with uv -- the first bench run on a
fresh clone creates it -- and ``serve()`` starts ``mlserver start <dir>`` on loopback ports.

The model is the bench's own ``train_model()``, saved with joblib by the main environment's
scikit-learn (the peers' lock pins the same version) as the ``model.joblib`` MLServer's sklearn runtime
loads. Server settings are MLServer's defaults except where it listens: 127.0.0.1, free HTTP, gRPC and
metrics ports (it always starts all three).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
from harness import BENCH_DIR, child, wait_http

PEERS_PROJECT = BENCH_DIR / "peers"
MLSERVER = PEERS_PROJECT / ".venv" / "bin" / "mlserver"
BATCHING = {"max_batch_size": 32, "max_batch_time": 0.002}
"""MLServer's adaptive batching, as the issue's comparison turns it on (``max_batch_time`` is seconds)."""


def uv_command() -> list[str]:
    """uv as the Makefile reaches it: ``$UV`` under ``uv run``, else ``uv`` on the PATH, else
    ``python3 -m uv``."""
    if uv := os.environ.get("UV"):
        return [uv]
    if uv := shutil.which("uv"):
        return [uv]
    return [shutil.which("python3") or sys.executable, "-m", "uv"]


def peers_env(log: Path) -> Path:
    """Create or update ``bench/peers/.venv`` from its lock; returns the ``mlserver`` executable."""
    # Under `uv run` VIRTUAL_ENV names the services' venv; this sync must use the project's own.
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}}
    cmd = [
        *uv_command(),
        "sync",
        "--project",
        str(PEERS_PROJECT),
        "--locked",
        # The interpreter the bench runs on: the joblib file is written and read by one Python.
        "--python",
        sys._base_executable,
    ]
    with open(log, "ab") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    if proc.returncode != 0 or not MLSERVER.exists():
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}; see {log}")
    return MLSERVER


def write_repository(root: Path, model: object, name: str, *, ports: dict[str, int], batching: bool) -> None:
    """``root/settings.json`` (server) and ``root/<name>/model-settings.json`` + ``model.joblib``."""
    (root / name).mkdir(parents=True, exist_ok=True)
    joblib.dump(model, root / name / "model.joblib")
    settings = {"host": "127.0.0.1", **ports}
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings: dict[str, object] = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
        **(BATCHING if batching else {}),
    }
    (root / name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))


@contextlib.contextmanager
def serve(
    workdir: Path, model: object, name: str, *, batching: bool, timeout_s: float = 180
) -> Iterator[str]:
    """Run MLServer on ``model`` until the block ends; yields its base URL once the model is ready."""
    from fleet_sdk.embedded_broker import free_port

    label = "mlserver-batched" if batching else "mlserver"
    mlserver = peers_env(workdir / "peers-sync.log")
    root = workdir / label
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    write_repository(root, model, name, ports=ports, batching=batching)
    env = {
        # MLServer's own start-up sees only its environment (VIRTUAL_ENV would name the services').
        "VIRTUAL_ENV": str(PEERS_PROJECT / ".venv"),
        # The model was fitted on a DataFrame and MLServer's NumPy codec hands it an array: sklearn
        # would warn on every call. The fleet's runtime silences the same warning.
        "PYTHONWARNINGS": "ignore:X does not have valid feature names:UserWarning",
    }
    # cwd: MLServer keeps its .metrics and .envs folders in the working directory.
    with child([str(mlserver), "start", str(root)], workdir / f"{label}.log", env=env, cwd=root) as proc:
        base = f"http://127.0.0.1:{ports['http_port']}"
        try:
            wait_http(f"{base}/v2/models/{name}/ready", timeout_s=timeout_s)
        except TimeoutError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlserver exited {proc.returncode}; see {workdir / f'{label}.log'}"
                ) from None
            raise
        yield base
