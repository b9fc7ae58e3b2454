"""The fleet overview a page at a time: ``GET /v1/overview`` filters by name, team, state, alerts,
drift and rollout, sorts by traffic, errors, latency and drift, slices with limit and offset, and
counts its totals over the caller's teams only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fleet_core.auth import Role
from fleet_monitor.entities import AlertDraft
from support.monitor import MonitorHarness, Population, inference, registered, route_update, running_monitor

TEAMS = ("credit", "risk", "growth")
MODELS = 30  # ten per team


def name(i: int) -> str:
    return f"{TEAMS[i % 3]}-model-{i:02d}"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[MonitorHarness]:
    """Thirty models of three teams. Model i gets i requests (so traffic sorts by i), every third
    one fails 1 request in 4; model 0 has no traffic at all; model 4 has a firing alert; model 5
    drifted (a shifted window scored; its episodes open two more alerts); model 6 has a canary in
    progress; model 7 is promoted."""
    async with running_monitor(tmp_path, lake_enabled=False, drift_window_rows=100, drift_min_rows=50) as m:
        profile = registered(name(0))
        for i in range(MODELS):
            await m.engine.on_model_registered(
                f"e-{i}", profile.model_copy(update={"model": name(i), "team": TEAMS[i % 3]})
            )
        population = Population(seed=5)
        row = population.rows(1)
        events = [
            inference(
                name(i),
                1,
                row,
                [0],
                latency_ms=float(10 + i),
                status="error" if i % 3 == 0 and n % 4 == 0 else "ok",
            )
            for i in range(1, MODELS)
            for n in range(i)
        ]
        m.engine.ingest(events)
        shifted = population.rows(100, shift={"income": 4.0})
        calm = population.rows(100)
        m.engine.ingest(
            [
                inference(name(5), 1, shifted, population.predictions(shifted)),
                inference(name(8), 1, calm, population.predictions(calm)),
            ]
        )
        await m.engine.settle()
        await m.engine.on_rollout_updated(
            "r-6",
            route_update(name(6), [(1, 90), (2, 10)], strategy="canary", phase="progressing", version=2),
        )
        await m.engine.on_rollout_updated("r-7", route_update(name(7), [(1, 100)]))
        async with m.engine.store.transaction() as s:
            await m.engine.store.open_alert(
                s, AlertDraft(kind="anomaly", name="latency", model=name(4), version=1, summary="slow")
            )
        yield m


async def page(m: MonitorHarness, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    response = await m.client.get("/v1/overview", params=params, headers=headers or m.auth())
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def names(result: dict[str, Any]) -> list[str]:
    return [row["name"] for row in result["models"]]


async def test_pages_cover_the_fleet_once_in_name_order(fleet: MonitorHarness) -> None:
    seen: list[str] = []
    for offset in range(0, MODELS, 7):
        result = await page(fleet, limit=7, offset=offset)
        assert result["total"] == result["total_models"] == MODELS
        assert (result["limit"], result["offset"], result["sort"], result["order"]) == (
            7,
            offset,
            "name",
            "asc",
        )
        seen += names(result)
    assert seen == sorted(name(i) for i in range(MODELS))
    assert names(await page(fleet, limit=5, offset=MODELS)) == []
    assert names(await page(fleet, limit=3, order="desc")) == sorted(seen, reverse=True)[:3]


async def test_search_by_name_contains_any_case_and_by_exact_name(fleet: MonitorHarness) -> None:
    found = await page(fleet, q="MODEL-1")
    assert names(found) == sorted(name(i) for i in range(10, 20))
    assert found["total"] == 10 and found["total_models"] == MODELS
    assert names(await page(fleet, q="risk-model-2")) == ["risk-model-22", "risk-model-25", "risk-model-28"]
    assert names(await page(fleet, model=name(13))) == [name(13)]
    assert names(await page(fleet, model="credit-model")) == [], "model= is an exact name"
    assert (await page(fleet, q="no-such"))["total"] == 0


async def test_filters_by_team_state_alerts_drift_and_rollout(fleet: MonitorHarness) -> None:
    risk = await page(fleet, team="risk")
    assert names(risk) == sorted(name(i) for i in range(MODELS) if i % 3 == 1)
    assert names(await page(fleet, state="not deployed")) == [name(0)]
    assert len(names(await page(fleet, state="serving", limit=1000))) == MODELS - 1
    # Model 5's drift episodes opened their own alerts (data and prediction drift).
    assert names(await page(fleet, alerting=True)) == sorted([name(4), name(5)])
    assert len(names(await page(fleet, alerting=False, limit=1000))) == MODELS - 2
    drifting = await page(fleet, drifting=True)
    assert names(drifting) == [name(5)]
    assert "data" in drifting["models"][0]["drifting"]
    assert names(await page(fleet, rollout=True)) == [name(6)], "a promoted rollout is not in progress"
    assert names(await page(fleet, team="credit", alerting=False, q="model-0")) == [
        name(0),
        name(3),
        name(6),
        name(9),
    ]


async def test_sorts_by_traffic_errors_latency_and_drift(fleet: MonitorHarness) -> None:
    busiest = await page(fleet, sort="rps", limit=3)
    assert (busiest["order"], names(busiest)) == ("desc", [name(29), name(28), name(27)])
    assert names(await page(fleet, sort="rps", order="asc", limit=2)) == [name(0), name(1)]

    erroring = names(await page(fleet, sort="error_rate", limit=9))
    assert {n for n in erroring} == {name(i) for i in range(3, MODELS, 3)}, "the failing ones first"

    slowest = await page(fleet, sort="latency_p95", limit=1000)
    assert names(slowest)[0] == name(29)
    assert names(slowest)[-1] == name(0), "a model without latency sorts last, whatever the order"
    assert names(await page(fleet, sort="latency_p95", order="asc", limit=1000))[-1] == name(0)

    drift = await page(fleet, sort="drift", limit=2)
    assert names(drift) == [name(5), name(8)], "the open episode first, then the scored window"
    assert drift["models"][0]["drift_score"] > drift["models"][1]["drift_score"] > 0
    alerts = await page(fleet, sort="alerts", limit=2)
    assert [(r["name"], r["alerts_firing"]) for r in alerts["models"]] == [(name(5), 2), (name(4), 1)]


async def test_a_viewer_sees_its_teams_only_totals_included(fleet: MonitorHarness) -> None:
    viewer = fleet.auth(Role.VIEWER, ["risk"])
    own = await page(fleet, viewer, limit=1000)
    assert {row["team"] for row in own["models"]} == {"risk"}
    assert own["total"] == own["total_models"] == 10
    assert own["teams"] == ["risk"]
    assert own["alerts_firing"] == 1  # model 4 belongs to risk
    assert own["events_ingested"] == sum(i for i in range(MODELS) if i % 3 == 1)
    assert (await page(fleet, viewer, team="credit"))["total"] == 0, "filtering cannot widen the view"
    assert (await page(fleet, viewer, q="credit"))["models"] == []
    everything = await page(fleet)
    assert everything["teams"] == sorted(TEAMS)
    assert everything["alerts_firing"] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "popularity"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"state": "sleeping"}, "state"),
        ({"order": "up"}, "order"),
        ({"alerting": "maybe"}, "alerting"),
        ({"q": "x" * 101}, "q"),
    ],
)
async def test_bad_paging_or_filters_are_a_422_naming_the_parameter(
    fleet: MonitorHarness, params: dict[str, Any], field: str
) -> None:
    response = await fleet.client.get("/v1/overview", params=params, headers=fleet.auth())
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_alerts_filter_by_team_and_severity_within_the_callers_teams(fleet: MonitorHarness) -> None:
    async def alerts(headers: dict[str, str] | None = None, **params: Any) -> list[tuple[str, str]]:
        response = await fleet.client.get("/v1/alerts", params=params, headers=headers or fleet.auth())
        assert response.status_code == 200, response.text
        return sorted((a["model"], a["name"]) for a in response.json())

    assert await alerts(team="risk") == [(name(4), "latency")]
    assert await alerts(team="growth") == [(name(5), "data_drift"), (name(5), "prediction_drift")]
    assert await alerts(severity="warning", team="risk") == [(name(4), "latency")]
    assert await alerts(severity="critical", team="risk") == []
    assert len(await alerts(limit=2)) == 2 and len(await alerts(limit=2, offset=2)) == 1
    viewer = fleet.auth(Role.VIEWER, ["risk"])
    assert await alerts(viewer) == [(name(4), "latency")]
    assert await alerts(viewer, team="growth") == [], "a team filter never widens what a viewer sees"
    refused = await fleet.client.get("/v1/alerts", params={"severity": "loud"}, headers=fleet.auth())
    assert refused.status_code == 422 and "severity" in refused.text
