"""`fleet register` against a real registry (served on a loopback port): one file with flags or its
manifest, many through a manifest, idempotent re-runs, and failures that name each model while the
rest land."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet_core.auth import Role, TokenAuthority
from fleet_registry.app import create_app
from fleet_registry.settings import RegistrySettings
from fleet_sdk.client import Client
from fleet_sdk.config import DEFAULT_URLS, ClientConfig
from support.http import serving
from support.onboarding import ROWS, skops_file

SECRET = "onboarding-test-secret-long-enough-for-hs256-0123"
ONLY_THE_REGISTRY = ClientConfig(urls=dict.fromkeys(DEFAULT_URLS, "http://127.0.0.1:1"))


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        self.authority = TokenAuthority(SECRET)

    def token(self, role: Role = Role.ADMIN, teams: list[str] | None = None) -> str:
        return self.authority.issue("ci", role, teams or ["*"], ttl=None)[0]

    def client(self, role: Role = Role.ADMIN, teams: list[str] | None = None) -> Client:
        return Client(self.url, self.token(role, teams), config=ONLY_THE_REGISTRY)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    settings = RegistrySettings(
        home=tmp_path / "registry", jwt_secret=SECRET, kafka_bootstrap="127.0.0.1:1", consume_events=False
    )
    async with serving(create_app(settings)) as url:
        yield Registry(url)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def fleet(registry: Registry, tmp_path: Path, *args: str, token: str | None = None) -> Ran:
    """The CLI as CI runs it: its own process (the registry in this one logs to stdout)."""
    env = {
        **os.environ,
        "FLEET_HOME": str(tmp_path / "home"),
        "FLEET_REGISTRY_URL": registry.url,
        "FLEET_TOKEN": token or registry.token(),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleet_sdk.cli", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def manifest_of(tmp_path: Path, count: int, *, bad: dict[str, Any] | None = None) -> Path:
    models = []
    for i in range(count):
        skops_file(tmp_path / "models" / f"m{i}.skops", seed=i)
        models.append({"name": f"m{i}", "team": f"team-{i % 2}", "artifact": f"models/m{i}.skops"})
    if bad:
        models.append(bad)
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump({"defaults": {"example_input": ROWS, "metrics": {"auc": 0.8}}, "models": models})
    )
    return path


async def test_a_manifest_registers_every_good_entry_and_names_the_bad_ones(
    registry: Registry, tmp_path: Path
) -> None:
    manifest = manifest_of(
        tmp_path,
        5,
        bad={
            "name": "wrong-signature",
            "team": "team-0",
            "artifact": "models/m0.skops",
            "signature": {"inputs": [{"name": "x", "type": "float"}]},
        },
    )
    result = await fleet(registry, tmp_path, "register", "--manifest", str(manifest), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["registered"], report["unchanged"], report["failed"]) == (5, 0, 1)
    failed = next(r for r in report["results"] if r["status"] == "failed")
    assert failed["name"] == "wrong-signature"
    assert "example_input" in failed["reason"] and "not in the model's signature" in failed["reason"]
    assert "failed: wrong-signature" in result.stderr

    client = registry.client()
    models = await asyncio.to_thread(client.list_models)
    assert sorted((m["name"], m["team"], m["latest_version"]) for m in models) == [
        (f"m{i}", f"team-{i % 2}", 1) for i in range(5)
    ]
    v = await asyncio.to_thread(client.get_version, "m3", 1)
    assert (v["task"], v["metrics"], v["example_input"]) == ("classification", {"auc": 0.8}, ROWS)

    # Re-running registers nothing: every good entry is unchanged, at the version it had.
    again = await fleet(registry, tmp_path, "register", "-m", str(manifest), "--json")
    report = json.loads(again.stdout)
    assert (report["registered"], report["unchanged"], report["failed"]) == (0, 5, 1)
    assert {r["version"] for r in report["results"] if r["status"] == "unchanged"} == {1}
    assert all(m["latest_version"] == 1 for m in await asyncio.to_thread(client.list_models))


async def test_a_refusal_by_the_registry_fails_that_entry_with_the_status_and_field(
    registry: Registry, tmp_path: Path
) -> None:
    manifest = manifest_of(tmp_path, 2)
    document = yaml.safe_load(manifest.read_text())
    document["models"][1]["deploy_policy"] = "direct"  # deploying needs role deployer
    manifest.write_text(yaml.safe_dump(document))
    scientist = registry.token(Role.SCIENTIST, ["team-0", "team-1"])
    result = await fleet(registry, tmp_path, "register", "-m", str(manifest), token=scientist)
    assert result.exit_code == 1
    assert "failed: m1" in result.stderr and "403" in result.stderr and "deploy_policy" in result.stderr
    assert "m0" in result.stdout and "registered" in result.stdout  # the table
    assert "1 registered, 1 failed" in result.stdout


async def test_an_existing_model_of_another_team_is_not_taken_over(
    registry: Registry, tmp_path: Path
) -> None:
    client = registry.client()
    await asyncio.to_thread(client.create_model, "m0", "someone-else")
    report = await asyncio.to_thread(client.register_manifest, manifest_of(tmp_path, 1))
    failed = report.results[0]
    assert failed.status == "failed" and "belongs to team 'someone-else'" in (failed.reason or "")


async def test_one_file_with_flags_or_with_the_manifest_next_to_it(
    registry: Registry, tmp_path: Path
) -> None:
    model = skops_file(tmp_path / "churn.skops")
    args = ["register", str(model), "--name", "churn", "--team", "growth", "--tag", "ci", "--json"]
    rows = [a for row in ROWS for a in ("--example", json.dumps(row))]
    first = await fleet(registry, tmp_path, *args, *rows, "--metric", "auc=0.9")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["results"][0] | {"sha256": None, "source": None} == {
        "name": "churn",
        "status": "registered",
        "team": "growth",
        "version": 1,
        "sha256": None,
        "source": None,
        "reason": None,
    }
    # The manifest next to the file supplies the rest; the same bytes are the same version.
    (tmp_path / "churn.yaml").write_text(
        yaml.safe_dump({"name": "churn", "team": "growth", "example_input": ROWS})
    )
    again = await fleet(registry, tmp_path, "register", str(model), "--json")
    assert json.loads(again.stdout)["results"][0]["status"] == "unchanged"
    # A new file registers version 2 (nothing of version 1's flags carries over).
    skops_file(model, seed=9)
    report = await asyncio.to_thread(registry.client().register_manifest, tmp_path / "churn.yaml")
    assert (report.results[0].status, report.results[0].version) == ("registered", 2)
    version = await asyncio.to_thread(registry.client().get_version, "churn", 2)
    assert version["tags"] == [] and version["metrics"] == {}


async def test_dry_run_checks_locally_and_registers_nothing(registry: Registry, tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 2, bad={"name": "gone", "team": "t", "artifact": "nowhere.onnx"})
    client = registry.client()
    report = await asyncio.to_thread(client.register_manifest, manifest, dry_run=True)
    assert (report.count("valid"), report.count("failed")) == (2, 1)
    assert "artifact not found" in (report.results[2].reason or "")
    assert await asyncio.to_thread(client.list_models) == []


async def test_the_python_api_returns_the_same_report(registry: Registry, tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 3)
    client = registry.client()
    seen: list[str] = []
    report = await asyncio.to_thread(
        client.register_manifest, manifest, concurrency=2, on_result=lambda r: seen.append(r.name)
    )
    assert report.ok and report.count("registered") == 3 and sorted(seen) == ["m0", "m1", "m2"]
    assert [r.name for r in report.results] == ["m0", "m1", "m2"]  # the manifest's order
