"""``fleet top`` and ``fleet monitor overview`` against a served monitor: one frame of the busiest,
slowest, erroring and drifting models, per team and with a limit; the overview a page at a time,
filtered and sorted by the monitor; ``Client.iter_overview`` pages through everything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fleet_core.auth import Role, TokenAuthority
from fleet_monitor.app import create_app
from fleet_monitor.entities import AlertDraft
from fleet_monitor.settings import MonitorSettings
from fleet_sdk.cli import app as cli
from fleet_sdk.client import Client
from fleet_sdk.config import DEFAULT_URLS, ClientConfig
from support import backend
from support.cli_output import printed_json
from support.http import serving
from support.monitor import SECRET, Population, inference, registered

TEAMS = ("credit", "risk")
MODELS = 24


def name(i: int) -> str:
    return f"{TEAMS[i % 2]}-{i:02d}"


@dataclass
class Served:
    url: str
    admin: str
    viewer_risk: str


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Served]:
    """24 models of two teams: model i serves 2*i requests at 10+i ms; models 3 and 9 fail a third
    of theirs; model 7 drifted (a shifted window); model 4 has a firing alert."""
    settings = MonitorSettings(
        home=tmp_path,
        **backend.lake_settings(),
        database_url=backend.database_url(tmp_path, "monitor"),
        kafka_bootstrap="127.0.0.1:1",
        jwt_secret=SECRET,
        consume_events=False,
        registry_url=None,
        tune_gc=False,
        drift_window_rows=100,
        drift_min_rows=50,
    )
    app = create_app(settings)
    async with serving(app) as url:
        engine = app.state.engine
        template = registered(name(0))
        for i in range(MODELS):
            update = {"model": name(i), "team": TEAMS[i % 2]}
            await engine.on_model_registered(f"e-{i}", template.model_copy(update=update))
        population = Population(seed=9)
        row = population.rows(1)
        engine.ingest(
            inference(
                name(i),
                1,
                row,
                [0],
                latency_ms=10.0 + i,
                status="error" if i in (3, 9) and n % 3 == 0 else "ok",
            )
            for i in range(MODELS)
            for n in range(2 * i)
        )
        shifted = population.rows(100, shift={"income": 4.0})
        engine.ingest([inference(name(7), 1, shifted, population.predictions(shifted))])
        await engine.settle()
        async with engine.store.transaction() as s:
            await engine.store.open_alert(
                s, AlertDraft(kind="anomaly", name="latency", model=name(4), version=1, summary="slow")
            )
        tokens = TokenAuthority(SECRET)
        admin, _, _ = tokens.issue("ana", Role.ADMIN, ["*"], ttl=None)
        viewer, _, _ = tokens.issue("rita", Role.VIEWER, ["risk"], ttl=None)
        yield Served(url, admin, viewer)


async def fleet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, served: Served, token: str, *args: str
) -> Result:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("FLEET_MONITOR_URL", served.url)
    monkeypatch.setenv("FLEET_TOKEN", token)
    monkeypatch.setenv("COLUMNS", "200")
    run = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert run.exit_code == 0, (run.output, run.exception)
    return run


def payload(run: Result) -> dict[str, Any]:
    """The JSON the command printed (the served monitor's own log lines share stdout here)."""
    document: dict[str, Any] = printed_json(run.output)
    return document


async def test_fleet_top_once_shows_the_busiest_slowest_erroring_and_drifting(
    monitor: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = await fleet(monkeypatch, tmp_path, monitor, monitor.admin, "top", "--once", "--limit", "3")
    out = run.output
    assert f"{MODELS} models (all teams you see)" in out
    assert "3 alerts firing" in out  # model 4's, and model 7's data and prediction drift
    busiest = [name(23), name(22), name(21)]
    for model in busiest:
        assert model in out
    assert name(20) not in out.split("Erroring")[0], "three per table"
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "Busiest" in line)
    top_row = next(line for line in lines[header:] if line.startswith("│"))
    # Busiest and Slowest stand side by side: the busiest is also the slowest (latency grows with i).
    assert top_row.count(name(23)) == 2 and "32.8 ms" in top_row
    erroring = "\n".join(lines[next(i for i, line in enumerate(lines) if "Erroring" in line) :])
    assert name(9) in erroring and name(3) in erroring
    assert name(7) in erroring and "data" in erroring, "the drifting table names the open episode"


async def test_fleet_top_for_one_team_and_as_a_viewer_sees_that_team_only(
    monitor: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = await fleet(monkeypatch, tmp_path, monitor, monitor.admin, "top", "--once", "--team", "credit")
    assert f"{MODELS // 2} models (team credit)" in run.output
    assert "risk-" not in run.output
    viewer = await fleet(monkeypatch, tmp_path, monitor, monitor.viewer_risk, "top", "--once")
    assert f"{MODELS // 2} models (all teams you see)" in viewer.output
    assert "credit-" not in viewer.output
    assert "2 alerts firing" in viewer.output  # risk-07's data and prediction drift, not credit-04's


async def test_fleet_monitor_overview_pages_filters_and_sorts(
    monitor: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = await fleet(monkeypatch, tmp_path, monitor, monitor.admin, "monitor", "overview", "--limit", "5")
    assert f"models 1-5 of {MODELS}" in first.output
    assert "Next page: --offset 5" in first.output
    assert name(8) in first.output and name(10) not in first.output, "by name, five of them"

    busiest = await fleet(
        monkeypatch,
        tmp_path,
        monitor,
        monitor.admin,
        "monitor",
        "overview",
        "--sort",
        "rps",
        "--limit",
        "2",
        "--json",
    )
    page = payload(busiest)
    assert [m["name"] for m in page["models"]] == [name(23), name(22)]

    credit = await fleet(
        monkeypatch,
        tmp_path,
        monitor,
        monitor.admin,
        "monitor",
        "overview",
        "--team",
        "credit",
        "-q",
        "1",
        "--json",
    )
    assert [m["name"] for m in payload(credit)["models"]] == [
        name(10),
        name(12),
        name(14),
        name(16),
        name(18),
    ]

    alerting = await fleet(
        monkeypatch, tmp_path, monitor, monitor.admin, "monitor", "overview", "--alerting", "--json"
    )
    assert [m["name"] for m in payload(alerting)["models"]] == [name(4), name(7)]

    everything = await fleet(
        monkeypatch,
        tmp_path,
        monitor,
        monitor.admin,
        "monitor",
        "overview",
        "--all",
        "--limit",
        "5",
        "--json",
    )
    assert len(payload(everything)["models"]) == MODELS


async def test_the_client_pages_through_the_overview(monitor: Served) -> None:
    urls = dict.fromkeys(DEFAULT_URLS, "http://127.0.0.1:1") | {"monitor_url": monitor.url}

    def read() -> tuple[list[str], dict[str, object]]:
        with Client(monitor.url, monitor.admin, config=ClientConfig(urls=urls)) as client:
            rows = [m["name"] for m in client.iter_overview(page_size=7, sort="latency_p95")]
            return rows, client.overview(drifting=True, limit=1)

    rows, drifting = await asyncio.to_thread(read)
    assert rows == [name(i) for i in reversed(range(1, MODELS))] + [name(0)], "slowest first, no latency last"
    assert [m["name"] for m in drifting["models"]] == [name(7)]  # type: ignore[index]
