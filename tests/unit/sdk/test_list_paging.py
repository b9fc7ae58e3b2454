"""``fleet deployments list``, ``fleet models list``, ``fleet rollout list`` and ``fleet jobs list``
over real HTTP at a thousand models from twenty teams: the first page by default with "showing 50 of
…", filters and sorts passed through, ``--all`` pages through every match, and a viewer's token
never lists another team's rows. The ``Client`` methods behind them page the same way."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_registry.models import ModelRow
from fleet_retrainer.models import JobRow
from fleet_sdk.cli import app as cli
from fleet_sdk.client import Client
from fleet_sdk.config import DEFAULT_URLS, ClientConfig
from support.deployer import DeployerHarness, FakeServingControl, running_deployer
from support.http import serving
from support.listing import Seeded, seed_fleet
from support.registry import running_registry
from support.retrainer import running_retrainer

IDLE_S = 300.0


class Stack:
    """The deployer, registry and retrainer on loopback ports, seeded at fleet size."""

    def __init__(
        self, deployer: DeployerHarness, fleet: list[Seeded], urls: dict[str, str], home: Path
    ) -> None:
        self.deployer, self.fleet, self.urls, self.home = deployer, fleet, urls, home

    def token(self, role: Role = Role.ADMIN, teams: list[str] | None = None) -> str:
        return self.deployer.auth(role, teams)["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    now = datetime.now(UTC)
    for part in ("deployer", "registry", "retrainer"):
        (tmp_path / part).mkdir()
    async with (
        running_deployer(tmp_path / "deployer", serving=FakeServingControl()) as deployer,
        running_registry(tmp_path / "registry") as registry,
        running_retrainer(tmp_path / "retrainer") as retrainer,
    ):
        fleet = await seed_fleet(deployer, models=1000, teams=20, now=now)
        async with registry.app.state.store.db.transaction() as s:
            await s.execute(
                insert(ModelRow),
                [
                    {
                        "name": d.model,
                        "team": d.team,
                        "tags": [],
                        "archived": False,
                        "created_at": now - timedelta(minutes=i),
                        "updated_at": now,
                        "created_by": "seed",
                    }
                    for i, d in enumerate(fleet)
                ],
            )
        async with retrainer.controller.store.transaction() as s:
            await s.execute(
                insert(JobRow),
                [
                    {
                        "id": f"00000000-0000-4000-8000-{i:012d}",
                        "model": d.model,
                        "team": d.team,
                        "trigger": "drift",
                        "requested_by": "monitor",
                        "state": "rejected" if i % 2 else "registered",
                        "result": {},
                        "logs": [],
                        "created_at": now - timedelta(seconds=i),
                    }
                    for i, d in enumerate(fleet[:300])
                ],
            )
        async with (
            serving(deployer.app, lifespan="off") as deployer_url,
            serving(registry.app, lifespan="off") as registry_url,
            serving(retrainer.app, lifespan="off") as retrainer_url,
        ):
            urls = dict.fromkeys(DEFAULT_URLS, "http://127.0.0.1:1") | {
                "deployer_url": deployer_url,
                "retrainer_url": retrainer_url,
                "registry_url": registry_url,
            }
            yield Stack(deployer, fleet, urls, tmp_path / "cli-home")


async def fleet_cli(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, *args: str, token: str | None = None
) -> str:
    monkeypatch.setenv("FLEET_HOME", str(stack.home))
    monkeypatch.setenv("COLUMNS", "250")  # a table row per line, no name folded over two
    monkeypatch.setenv("FLEET_DEPLOYER_URL", stack.urls["deployer_url"])
    monkeypatch.setenv("FLEET_RETRAINER_URL", stack.urls["retrainer_url"])
    monkeypatch.setenv("FLEET_REGISTRY_URL", stack.urls["registry_url"])
    monkeypatch.setenv("FLEET_TOKEN", token or stack.token())
    run = await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)
    assert run.exit_code == 0, run.output
    return run.output


def rows_named(output: str) -> list[str]:
    """The model names in a printed table, in order."""
    return re.findall(r"(?<![\w-])m\d{4}-[a-z]+(?![\w-])", output)  # not in an app name


async def test_the_cli_shows_the_first_page_and_says_how_many_there_are(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = sorted(d.model for d in stack.fleet if d.state != "retired")
    out = await fleet_cli(stack, monkeypatch, "deployments", "list")
    assert "showing 50 of 980" in out
    assert "930 more: --offset 50" in out
    assert rows_named(out) == live[:50]
    second = await fleet_cli(stack, monkeypatch, "deployments", "list", "--offset", "50", "--limit", "20")
    assert "showing 51-70 of 980" in second and rows_named(second) == live[50:70]

    models = await fleet_cli(stack, monkeypatch, "models", "list", "--limit", "10")
    assert "showing 10 of 1,000" in models and rows_named(models) == sorted(d.model for d in stack.fleet)[:10]
    rollouts = await fleet_cli(stack, monkeypatch, "rollout", "list", "--limit", "5")
    assert "showing 5 of 1,000" in rollouts
    jobs = await fleet_cli(stack, monkeypatch, "jobs", "list")
    assert "showing 50 of 300" in jobs


async def test_filters_and_sorts_reach_the_api_and_all_pages_through(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    out = await fleet_cli(
        stack,
        monkeypatch,
        "deployments",
        "list",
        "--team",
        "team-02",
        "--state",
        "ready",
        "--placement",
        "pool",
        "--active",
        "--name",
        "ads",
        "--all",
        "--json",
    )
    want = sorted(
        d.model
        for d in stack.fleet
        if d.team == "team-02"
        and d.state == "ready"
        and d.placement == "pool"
        and not d.idle(IDLE_S, now)
        and "ads" in d.model
    )
    assert want and [d["model"] for d in json.loads(out)] == want

    idle = json.loads(await fleet_cli(stack, monkeypatch, "deployments", "list", "--idle", "--all", "--json"))
    assert len(idle) == sum(1 for d in stack.fleet if d.state != "retired" and d.idle(IDLE_S, now))
    assert all(d["idle"] for d in idle)

    busiest = json.loads(
        await fleet_cli(
            stack, monkeypatch, "deployments", "list", "--sort", "-traffic", "--limit", "5", "--json"
        )
    )
    live = sorted((d for d in stack.fleet if d.state != "retired"), key=lambda d: d.model)
    top = sorted(live, key=lambda d: d.traffic_weight, reverse=True)[:5]
    assert [d["model"] for d in busiest] == [d.model for d in top]

    everything = json.loads(await fleet_cli(stack, monkeypatch, "models", "list", "--all", "--json"))
    assert len(everything) == 1000 and len({m["name"] for m in everything}) == 1000
    oldest = json.loads(
        await fleet_cli(stack, monkeypatch, "models", "list", "--sort", "created", "--limit", "3", "--json")
    )
    assert [m["name"] for m in oldest] == ["m0999-risk", "m0998-ads", "m0997-fraud"]

    canaries = json.loads(
        await fleet_cli(
            stack,
            monkeypatch,
            "rollout",
            "list",
            "--strategy",
            "canary",
            "--state",
            "progressing",
            "--all",
            "--json",
        )
    )
    assert len(canaries) == 50 and {(r["strategy"], r["phase"]) for r in canaries} == {
        ("canary", "progressing")
    }
    rejected = json.loads(
        await fleet_cli(
            stack, monkeypatch, "jobs", "list", "--state", "rejected", "--team", "team-01", "--all", "--json"
        )
    )
    assert len(rejected) == 15 and {(j["state"], j["team"]) for j in rejected} == {("rejected", "team-01")}


async def test_a_viewer_lists_only_their_teams_rows(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = stack.token(Role.VIEWER, ["team-04"])
    for command in (["deployments", "list"], ["models", "list"], ["rollout", "list"], ["jobs", "list"]):
        rows = json.loads(await fleet_cli(stack, monkeypatch, *command, "--all", "--json", token=viewer))
        assert rows and {r["team"] for r in rows} == {"team-04"}, command
    out = await fleet_cli(stack, monkeypatch, "deployments", "list", "--team", "team-05", token=viewer)
    assert "Deployments (0)" in out and not rows_named(out)


async def test_the_client_pages_through_with_filters(stack: Stack) -> None:
    def lists() -> tuple[Any, ...]:
        with Client(stack.urls["registry_url"], stack.token(), config=ClientConfig(urls=stack.urls)) as c:
            return (
                c.deployments(placement="dedicated", include_retired=True),
                c.deployments_page(sort="-last_request", limit=3),
                c.list_models(team="team-09"),
                c.rollouts(team="team-09", strategy="blue_green"),
                c.jobs(team="team-09"),
                c.jobs_page(limit=7, offset=294),
            )

    dedicated, recent, models, rollouts, jobs, last_jobs = await asyncio.to_thread(lists)
    assert len(dedicated) == 100 and {d["placement"]["kind"] for d in dedicated} == {"dedicated"}
    assert (recent["total"], recent["limit"], len(recent["items"])) == (980, 3, 3)
    assert len(models) == 50 and {m["team"] for m in models} == {"team-09"}
    assert len(rollouts) == 50 and {(r["team"], r["strategy"]) for r in rollouts} == {
        ("team-09", "blue_green")
    }
    assert len(jobs) == 15 and (last_jobs["total"], len(last_jobs["items"])) == (300, 6)
