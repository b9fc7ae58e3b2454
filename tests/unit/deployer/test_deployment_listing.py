"""``GET /v1/deployments`` and ``GET /v1/rollouts`` at a thousand models from twenty teams: pages that
never overlap and add up to ``total``, filters that combine, every sort, team isolation in every page
and total, Ray asked only about the page's applications, and a fixed number of SQL statements per
listing (and per route snapshot) whatever the fleet's size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from fleet_core.auth import Role
from fleet_core.serving import POOL_APP
from support.deployer import DeployerHarness, FakeServingControl
from support.listing import Seeded, seed_fleet

IDLE_S = 300.0  # the deployer's default idle window


@pytest.fixture
async def fleet(deployer: DeployerHarness) -> list[Seeded]:
    return await seed_fleet(deployer, models=1000, teams=20)


async def pages(
    deployer: DeployerHarness, path: str, params: dict[str, Any], headers: dict[str, str], size: int = 137
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item, page by page, and each page's ``total``."""
    items: list[dict[str, Any]] = []
    totals: list[int] = []
    offset = 0
    while True:
        r = await deployer.client.get(
            path, params={**params, "limit": size, "offset": offset}, headers=headers
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert (page["limit"], page["offset"]) == (size, offset)
        assert len(page["items"]) <= size
        items += page["items"]
        totals.append(page["total"])
        offset += size
        if offset >= page["total"]:
            return items, totals


def keys(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(d["model"], d["version"]) for d in items]


def expected(fleet: list[Seeded], keep: Callable[[Seeded], bool]) -> list[Seeded]:
    return sorted((d for d in fleet if keep(d)), key=lambda d: (d.model, d.version))


@contextmanager
def statements(deployer: DeployerHarness) -> Iterator[list[str]]:
    """The SQL statements the deployer runs inside the block (but the outbox relay's polls)."""
    seen: list[str] = []
    engine = deployer.app.state.db.engine.sync_engine

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "outbox" not in sql and "inbox" not in sql:
            seen.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_pages_of_a_thousand_deployments_add_up_without_overlap(
    deployer: DeployerHarness, fleet: list[Seeded]
) -> None:
    live = expected(fleet, lambda d: d.state != "retired")
    items, totals = await pages(deployer, "/v1/deployments", {}, deployer.auth())
    assert set(totals) == {len(live)} and len(live) == 980
    assert keys(items) == [(d.model, d.version) for d in live], "name order, each once"
    now = datetime.now(UTC)
    by_key = {(d.model, d.version): d for d in fleet}
    for item in items:
        seeded = by_key[(item["model"], item["version"])]
        assert item["team"] == seeded.team and item["state"] == seeded.state
        assert item["placement"]["kind"] == seeded.placement
        assert item["traffic_weight"] == seeded.traffic_weight and item["shadow"] is seeded.shadow
        assert item["idle"] is seeded.idle(IDLE_S, now)
        assert item["replicas"] == (2 if seeded.placement == "pool" else 1)

    first = (await deployer.client.get("/v1/deployments", headers=deployer.auth())).json()
    assert (len(first["items"]), first["total"], first["limit"], first["offset"]) == (50, 980, 50, 0)
    beyond = (await deployer.client.get("/v1/deployments?offset=5000", headers=deployer.auth())).json()
    assert (beyond["items"], beyond["total"]) == ([], 980)
    everything = await pages(deployer, "/v1/deployments", {"include_retired": "true"}, deployer.auth(), 500)
    assert len(everything[0]) == 1000 and set(everything[1]) == {1000}


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"team": "team-03"}, lambda d: d.team == "team-03"),
        ({"state": "failed"}, lambda d: d.state == "failed"),
        ({"state": "retired"}, lambda d: d.state == "retired"),
        ({"placement": "dedicated"}, lambda d: d.placement == "dedicated"),
        ({"name": "FRAUD"}, lambda d: "fraud" in d.model),
        ({"name": "m01"}, lambda d: "m01" in d.model),
        ({"idle": "true"}, lambda d: d.idle(IDLE_S, datetime.now(UTC))),
        ({"idle": "false"}, lambda d: not d.idle(IDLE_S, datetime.now(UTC))),
        (
            {"team": "team-07", "placement": "pool", "idle": "false", "name": "risk", "state": "ready"},
            lambda d: (
                d.team == "team-07"
                and d.placement == "pool"
                and not d.idle(IDLE_S, datetime.now(UTC))
                and "risk" in d.model
                and d.state == "ready"
            ),
        ),
    ],
)
async def test_filters_combine_and_the_total_counts_every_match(
    deployer: DeployerHarness, fleet: list[Seeded], params: dict[str, str], keep: Callable[[Seeded], bool]
) -> None:
    want = expected(fleet, lambda d: keep(d) and (d.state != "retired" or params.get("state") == "retired"))
    assert want, "every filter here matches something"
    items, totals = await pages(deployer, "/v1/deployments", params, deployer.auth(), size=40)
    assert keys(items) == [(d.model, d.version) for d in want]
    assert set(totals) == {len(want)}


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("name", lambda live: live),
        ("-name", lambda live: live[::-1]),
        ("updated", lambda live: sorted(live, key=lambda d: d.updated_at)),
        ("-updated", lambda live: sorted(live, key=lambda d: -d.updated_at.timestamp())),
        (
            "last_request",
            lambda live: sorted(live, key=lambda d: (d.last_request_at is not None, d.last_request_at or 0)),
        ),
        (
            "-last_request",
            lambda live: sorted(
                live,
                key=lambda d: (
                    d.last_request_at is None,
                    -d.last_request_at.timestamp() if d.last_request_at else 0,
                ),
            ),
        ),
        ("traffic", lambda live: sorted(live, key=lambda d: d.traffic_weight)),
        ("-traffic", lambda live: sorted(live, key=lambda d: d.traffic_weight, reverse=True)),
    ],
)
async def test_every_sort_pages_through_the_same_deployments_in_its_order(
    deployer: DeployerHarness, fleet: list[Seeded], sort: str, order: Callable[[list[Seeded]], list[Seeded]]
) -> None:
    live = expected(fleet, lambda d: d.state != "retired")  # ties fall back to name order
    items, totals = await pages(deployer, "/v1/deployments", {"sort": sort}, deployer.auth())
    assert keys(items) == [(d.model, d.version) for d in order(live)]
    assert set(totals) == {980}


async def test_a_team_never_sees_another_teams_deployments_in_any_page_or_total(
    deployer: DeployerHarness, fleet: list[Seeded]
) -> None:
    viewer = deployer.auth(Role.VIEWER, ["team-04"])
    mine = expected(fleet, lambda d: d.team == "team-04" and d.state != "retired")
    for sort in ("name", "-traffic", "-last_request"):
        items, totals = await pages(deployer, "/v1/deployments", {"sort": sort}, viewer, size=7)
        assert sorted(keys(items)) == [(d.model, d.version) for d in mine]
        assert set(totals) == {len(mine)}
    for params in ({"team": "team-05"}, {"team": "team-05", "include_retired": "true"}, {"state": "retired"}):
        page = (await deployer.client.get("/v1/deployments", params=params, headers=viewer)).json()
        if params.get("team"):
            assert (page["items"], page["total"]) == ([], 0)
        else:
            assert {d["team"] for d in page["items"]} <= {"team-04"}
    two = deployer.auth(Role.VIEWER, ["team-04", "team-09"])
    items, totals = await pages(deployer, "/v1/deployments", {"sort": "-updated"}, two, size=25)
    assert {d["team"] for d in items} == {"team-04", "team-09"} and set(totals) == {len(items)}
    rollouts, rollout_totals = await pages(deployer, "/v1/rollouts", {}, viewer, size=9)
    assert {r["team"] for r in rollouts} == {"team-04"} and set(rollout_totals) == {50}
    hidden = (await deployer.client.get("/v1/rollouts", params={"team": "team-05"}, headers=viewer)).json()
    assert (hidden["items"], hidden["total"]) == ([], 0)


async def test_ray_is_asked_only_about_the_applications_on_the_page(
    deployer: DeployerHarness, serving: FakeServingControl, fleet: list[Seeded]
) -> None:
    serving.described.clear()
    page = (
        await deployer.client.get("/v1/deployments", params={"limit": 30}, headers=deployer.auth())
    ).json()
    apps = {d["placement"]["app"] for d in page["items"] if d["state"] != "retired"}
    assert POOL_APP in apps and len(apps) > 1
    assert sorted(serving.described) == sorted(apps), "each application on the page once, the pool once"

    serving.described.clear()
    await deployer.client.get(
        "/v1/deployments", params={"placement": "pool", "limit": 500}, headers=deployer.auth()
    )
    assert serving.described == [POOL_APP]


async def test_a_listing_and_a_route_snapshot_run_a_fixed_number_of_statements(
    deployer: DeployerHarness, fleet: list[Seeded]
) -> None:
    for params in ({"limit": 500}, {"limit": 500, "sort": "-traffic", "idle": "true"}):
        with statements(deployer) as seen:
            r = await deployer.client.get("/v1/deployments", params=params, headers=deployer.auth())
        assert r.status_code == 200
        assert len(seen) <= 6, seen

    with statements(deployer) as seen:
        snapshot = (await deployer.client.get("/v1/routes", headers=deployer.auth())).json()
    assert len(snapshot["models"]) == 1000
    assert len(seen) <= 6, f"{len(seen)} statements for 1,000 route tables"
    by_model = {m["model"]: m for m in snapshot["models"]}
    for name in ("m0007-risk", "m0013-fraud", "m0500-churn", "m0999-risk"):  # a retired one among them
        one = (await deployer.client.get(f"/v1/routes/{name}", headers=deployer.auth())).json()
        assert by_model[name] == one
    assert [v["spec"]["version"] for v in by_model["m0007-risk"]["versions"]] == [1], (
        "a retired version an arm still names is served"
    )


async def test_rollouts_filter_by_team_strategy_and_phase_and_sort(
    deployer: DeployerHarness, fleet: list[Seeded]
) -> None:
    items, totals = await pages(
        deployer, "/v1/rollouts", {"strategy": "canary", "phase": "progressing"}, deployer.auth(), size=11
    )
    # i % 5 == 1 and i % 4 == 2: i % 20 == 6, so one team's fifty models, every one of them.
    assert {(r["strategy"], r["phase"], r["team"]) for r in items} == {("canary", "progressing", "team-06")}
    assert set(totals) == {50} and len({r["id"] for r in items}) == 50
    newest = [r["created_at"] for r in items]
    assert newest == sorted(newest, reverse=True)
    by_model, _ = await pages(deployer, "/v1/rollouts", {"sort": "model", "team": "team-06"}, deployer.auth())
    assert [r["model"] for r in by_model] == sorted(r["model"] for r in by_model) and len(by_model) == 50
    oldest, _ = await pages(deployer, "/v1/rollouts", {"sort": "updated"}, deployer.auth(), size=400)
    assert [r["updated_at"] for r in oldest] == sorted(r["updated_at"] for r in oldest) and len(
        oldest
    ) == 1000


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort": "size"}, "sort"),
        ({"state": "running"}, "state"),
        ({"placement": "gpu"}, "placement"),
        ({"idle": "maybe"}, "idle"),
        ({"name": "x" * 101}, "name"),
    ],
)
async def test_bad_list_parameters_are_refused_naming_the_field(
    deployer: DeployerHarness, params: dict[str, Any], field: str
) -> None:
    r = await deployer.client.get("/v1/deployments", params=params, headers=deployer.auth())
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert field in r.text
    if field in ("limit", "offset"):
        r = await deployer.client.get("/v1/rollouts", params=params, headers=deployer.auth())
        assert r.status_code == 422 and field in r.text
