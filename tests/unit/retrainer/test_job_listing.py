"""``GET /v1/jobs`` is a page with a total: filters by team, model and state combine within the
caller's teams, sorts page through without overlap, and a team never sees another team's jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from fleet_core.auth import Role
from fleet_retrainer.models import JobRow
from support.retrainer import RetrainerHarness

STATES = ("queued", "running", "registered", "rejected", "failed")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def jobs(retrainer: RetrainerHarness) -> list[dict[str, Any]]:
    """600 finished and unfinished jobs of 200 models from 20 teams (a few from before teams)."""
    rows = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "model": f"m{i % 200:04d}",
            "team": None if i % 97 == 0 else f"team-{i % 20:02d}",
            "trigger": "drift",
            "requested_by": "monitor",
            "state": STATES[i % 5],
            "result": {},
            "logs": [],
            "created_at": NOW - timedelta(seconds=(i * 7919) % 600),
        }
        for i in range(600)
    ]
    async with retrainer.controller.store.transaction() as s:
        await s.execute(insert(JobRow), rows)
    return rows


async def every_page(
    h: RetrainerHarness, params: dict[str, Any], headers: dict[str, str], size: int = 71
) -> tuple[list[dict[str, Any]], set[int]]:
    items: list[dict[str, Any]] = []
    totals: set[int] = set()
    offset = 0
    while True:
        r = await h.client.get(
            "/v1/jobs", params={**params, "limit": size, "offset": offset}, headers=headers
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert (page["limit"], page["offset"]) == (size, offset)
        items += page["items"]
        totals.add(page["total"])
        offset += size
        if offset >= page["total"]:
            return items, totals


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("-created", lambda j: (-j["created_at"].timestamp(), j["id"])),
        ("created", lambda j: (j["created_at"], j["id"])),
        ("model", lambda j: (j["model"], -j["created_at"].timestamp(), j["id"])),
    ],
)
async def test_every_sort_pages_through_every_job_once(
    retrainer: RetrainerHarness, jobs: list[dict[str, Any]], sort: str, key: Any
) -> None:
    items, totals = await every_page(retrainer, {"sort": sort}, retrainer.auth())
    assert [j["id"] for j in items] == [j["id"] for j in sorted(jobs, key=key)]
    assert totals == {600}


async def test_filters_combine_within_the_callers_teams(
    retrainer: RetrainerHarness, jobs: list[dict[str, Any]]
) -> None:
    viewer = retrainer.auth(Role.VIEWER, ["team-03", "team-08"])
    items, totals = await every_page(retrainer, {}, viewer, size=13)
    mine = {j["id"] for j in jobs if j["team"] in ("team-03", "team-08")}
    assert {j["id"] for j in items} == mine and totals == {len(mine)} and len(items) == len(mine)
    # i % 20 == 3 and i % 5 == 3: every job of team-03 is "rejected".
    rejected, totals = await every_page(retrainer, {"team": "team-03", "state": "rejected"}, viewer)
    assert totals == {len(rejected)} == {sum(1 for j in jobs if j["team"] == "team-03")}
    assert (await every_page(retrainer, {"team": "team-03", "state": "queued"}, viewer))[1] == {0}
    model, _ = await every_page(retrainer, {"model": "m0003"}, viewer)
    assert {j["model"] for j in model} == {"m0003"} and len(model) == 3
    other = (await retrainer.client.get("/v1/jobs", params={"team": "team-04"}, headers=viewer)).json()
    assert (other["items"], other["total"]) == ([], 0)
    too_big = await retrainer.client.get("/v1/jobs", params={"limit": 501}, headers=viewer)
    assert (too_big.status_code, too_big.json()["field"]) == (422, "limit")
