"""Who may read what in the monitor API: every route checks role and team, listings show only the
caller's teams, a model with no known team is an admin's alone, anonymous reads exist only in the
embedded stack, and out-of-range integers are a 422 naming the parameter, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from fleet_core.auth import Role
from fleet_monitor.app import create_app
from fleet_monitor.entities import AlertDraft
from fleet_monitor.settings import MonitorSettings
from fleet_sdk.embedded_broker import free_port
from support.monitor import (
    SECRET,
    MonitorHarness,
    Population,
    feedback,
    inference,
    registered,
    running_monitor,
)

CREDIT, FRAUD, GHOST = "credit", "fraud", "ghost"  # teams credit and risk; ghost has no known team


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[MonitorHarness]:
    """Three models: ``credit`` (team credit), ``fraud`` (team risk), ``ghost`` (seen only in traffic),
    each with a firing alert and lake rows with labels."""
    async with running_monitor(tmp_path) as m:
        await m.engine.on_model_registered("e-credit", registered(CREDIT))
        await m.engine.on_model_registered("e-fraud", registered(FRAUD, team="risk"))
        rows = Population(seed=3).rows(3)
        for model in (CREDIT, FRAUD, GHOST):
            served = inference(model, 1, rows, [0, 1, 0], request_id=f"req-{model}")
            m.engine.ingest([served])
            m.engine.ingest_feedback(feedback(model, served.request_id, [0, 1, 1]))
            async with m.engine.store.transaction() as s:
                await m.engine.store.open_alert(
                    s,
                    AlertDraft(
                        kind="anomaly",
                        name="latency",
                        model=model,
                        version=1,
                        severity="warning",
                        summary="x",
                    ),
                )
        assert m.engine.lake is not None
        m.engine.lake.flush()
        yield m


def viewer(m: MonitorHarness, *teams: str) -> dict[str, str]:
    return m.auth(Role.VIEWER, list(teams))


async def test_the_overview_lists_only_the_callers_teams(monitor: MonitorHarness) -> None:
    own = (await monitor.client.get("/v1/overview", headers=viewer(monitor, "credit"))).json()
    assert [m["name"] for m in own["models"]] == [CREDIT]
    assert own["alerts_firing"] == 1
    assert own["events_ingested"] == 1, "only the caller's traffic is counted"

    everything = (await monitor.client.get("/v1/overview", headers=monitor.auth(Role.ADMIN, []))).json()
    assert [m["name"] for m in everything["models"]] == [CREDIT, FRAUD, GHOST]
    assert everything["alerts_firing"] == 3
    star = (await monitor.client.get("/v1/overview", headers=viewer(monitor, "*"))).json()
    assert [m["name"] for m in star["models"]] == [CREDIT, FRAUD, GHOST]


async def test_the_live_feed_lists_only_the_callers_teams(tmp_path: Path) -> None:
    # Server-Sent Events never end, so this one runs over real HTTP (ASGITransport buffers bodies).
    settings = MonitorSettings(
        home=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        kafka_bootstrap="127.0.0.1:1",
        jwt_secret=SECRET,
        consume_events=False,
        lake_enabled=False,
        stream_interval_s=0.2,
        tune_gc=False,
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the monitor did not start"
            await asyncio.sleep(0.05)
        engine = app.state.engine
        await engine.on_model_registered("e-credit", registered(CREDIT))
        await engine.on_model_registered("e-fraud", registered(FRAUD, team="risk"))
        token, _, _ = app.state.tokens.issue("v", Role.VIEWER, ["risk"])
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
            client.stream("GET", "/v1/stream", headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data = json.loads(line.removeprefix("data:"))
                    break
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(serving, 10)
    assert [m["name"] for m in data["models"]] == [FRAUD]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/{model}",
        "/v1/models/{model}/config",
        "/v1/lake/{model}",
        "/v1/lake/{model}/labelled",
        "/v1/alerts?model={model}",
    ],
)
async def test_a_models_data_is_readable_by_its_team_only(monitor: MonitorHarness, path: str) -> None:
    credit = viewer(monitor, "credit")
    assert (await monitor.client.get(path.format(model=CREDIT), headers=credit)).status_code == 200
    other = await monitor.client.get(path.format(model=FRAUD), headers=credit)
    assert other.status_code == 403, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["field"] == "team"
    no_team = await monitor.client.get(path.format(model=GHOST), headers=credit)
    assert no_team.status_code == 403, "a model with no known team fails closed"
    admin = await monitor.client.get(path.format(model=GHOST), headers=monitor.auth(Role.ADMIN, []))
    assert admin.status_code == 200


async def test_alert_listings_and_single_alerts_are_limited_to_the_callers_teams(
    monitor: MonitorHarness,
) -> None:
    credit = viewer(monitor, "credit")
    listed = (await monitor.client.get("/v1/alerts", headers=credit)).json()
    assert {a["model"] for a in listed} == {CREDIT}
    everything = (await monitor.client.get("/v1/alerts", headers=monitor.auth(Role.ADMIN, []))).json()
    ids = {a["model"]: a["id"] for a in everything}
    assert set(ids) == {CREDIT, FRAUD, GHOST}
    assert (await monitor.client.get(f"/v1/alerts/{ids[CREDIT]}", headers=credit)).status_code == 200
    assert (await monitor.client.get(f"/v1/alerts/{ids[FRAUD]}", headers=credit)).status_code == 403
    assert (await monitor.client.get(f"/v1/alerts/{ids[GHOST]}", headers=credit)).status_code == 403


async def test_config_writes_need_deployer_on_the_models_team(monitor: MonitorHarness) -> None:
    body = {"drift_psi": 0.3}
    deployer = monitor.auth(Role.DEPLOYER, ["credit"])
    assert (
        await monitor.client.put(f"/v1/models/{FRAUD}/config", json=body, headers=deployer)
    ).status_code == 403
    assert (
        await monitor.client.put(f"/v1/models/{GHOST}/config", json=body, headers=deployer)
    ).status_code == 403
    low = await monitor.client.put(
        f"/v1/models/{CREDIT}/config", json=body, headers=viewer(monitor, "credit")
    )
    assert low.status_code == 403
    ok = await monitor.client.put(f"/v1/models/{CREDIT}/config", json=body, headers=deployer)
    assert ok.status_code == 200, ok.text


async def test_anonymous_reads_see_everything_only_where_they_are_allowed(tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    async with running_monitor(tmp_path / "on") as embedded:
        assert embedded.settings.anonymous_read is True, "the embedded stack's dashboard needs no token"
        assert (await embedded.client.get("/v1/overview")).status_code == 200
    async with running_monitor(tmp_path / "off", anonymous_read=False) as closed:
        response = await closed.client.get("/v1/overview")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


def test_anonymous_read_is_off_and_refused_outside_embedded_mode(tmp_path: Path) -> None:
    production = {"mode": "production", "jwt_secret": SECRET, "home": tmp_path}
    assert MonitorSettings(**production).anonymous_read is False
    assert MonitorSettings(home=tmp_path).anonymous_read is True
    with pytest.raises(ValidationError, match="FLEET_ANONYMOUS_READ=true is refused outside embedded mode"):
        MonitorSettings(**production, anonymous_read=True)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/alerts?offset=236967761860626644992", "offset"),
        ("/v1/alerts?offset=-1", "offset"),
        ("/v1/alerts?limit=100000", "limit"),
        ("/v1/alerts/236967761860626644992", "alert_id"),
        ("/v1/alerts/0", "alert_id"),
        ("/v1/lake/credit/labelled?offset=236967761860626644992", "offset"),
        ("/v1/lake/credit/labelled?limit=236967761860626644992", "limit"),
        ("/v1/lake/credit/labelled?limit=0", "limit"),
    ],
)
async def test_out_of_range_integers_are_a_422_naming_the_parameter(
    monitor: MonitorHarness, path: str, field: str
) -> None:
    response = await monitor.client.get(path, headers=monitor.auth(Role.ADMIN, []))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"].endswith(field)


async def test_labelled_rows_come_in_bounded_pages_with_the_total(monitor: MonitorHarness) -> None:
    lake = monitor.engine.lake
    assert lake is not None
    rows = Population(seed=5).rows(25)
    served = inference(CREDIT, 1, rows, [0] * 25, request_id="req-many")
    monitor.engine.ingest([served])
    monitor.engine.ingest_feedback(feedback(CREDIT, served.request_id, [1] * 25))
    lake.flush()
    headers = viewer(monitor, "credit")
    pages: list[list[dict[str, object]]] = []
    url: str | None = f"/v1/lake/{CREDIT}/labelled?limit=10"
    while url is not None:
        response = await monitor.client.get(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["x-total-count"] == "28"
        pages.append(response.json())
        link = response.headers.get("link")
        url = link.split(";")[0].strip("<>") if link else None
    assert [len(p) for p in pages] == [10, 10, 8]
    assert pages[0][-1]["request_id"] == "req-many", "the first page holds the newest rows"
    seen = [(r["request_id"], r["row"]) for page in pages for r in page]
    assert len(set(seen)) == 28, "pages do not overlap"


@pytest.mark.parametrize("field", ["drift_min_rows", "analysis_min_requests", "drift_window_rows"])
async def test_out_of_range_thresholds_are_a_422_naming_the_field(
    monitor: MonitorHarness, field: str
) -> None:
    response = await monitor.client.put(
        f"/v1/models/{CREDIT}/config",
        json={field: 236967761860626644992},
        headers=monitor.auth(Role.DEPLOYER, ["credit"]),
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"].endswith(field)


async def test_a_model_claimed_by_a_second_team_is_visible_to_admins_only(monitor: MonitorHarness) -> None:
    """A model.registered naming another team for an existing model (forged, or a mistake) must not
    hand the model to that team: the monitor fails closed until an admin sorts it out."""
    await monitor.engine.on_model_registered("e-forged", registered(FRAUD, version=2, team="credit"))
    for teams in (["credit"], ["risk"]):
        response = await monitor.client.get(f"/v1/models/{FRAUD}", headers=viewer(monitor, *teams))
        assert response.status_code == 403
        overview = (await monitor.client.get("/v1/overview", headers=viewer(monitor, *teams))).json()
        assert FRAUD not in [m["name"] for m in overview["models"]]
    admin = await monitor.client.get(f"/v1/models/{FRAUD}", headers=monitor.auth(Role.ADMIN, []))
    assert admin.status_code == 200 and admin.json()["team"] is None
