"""``GET /v1/models`` at a thousand models from twenty teams: every sort pages through the same
models without overlap, ``total`` counts the matches, a team never sees another's, and a page
costs a fixed number of SQL statements (a model's latest version and aliases are not asked for one
model at a time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from fleet_core.auth import Role
from fleet_registry.models import ModelRow
from support.registry import RegistryHarness, upload_version

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _row(i: int) -> dict[str, Any]:
    return {
        "name": f"m{i:04d}",
        "team": f"team-{i % 20:02d}",
        "tags": ["even"] if i % 2 == 0 else [],
        "archived": i % 100 == 99,
        "created_at": NOW - timedelta(minutes=i),
        "updated_at": NOW - timedelta(minutes=(i * 37) % 1000, seconds=i % 3),
        "created_by": "seed",
    }


@pytest.fixture
async def catalogue(registry: RegistryHarness) -> list[dict[str, Any]]:
    rows = [_row(i) for i in range(1000)]
    async with registry.app.state.store.db.transaction() as s:
        await s.execute(insert(ModelRow), rows)
    return rows


async def every_page(
    h: RegistryHarness, params: dict[str, Any], headers: dict[str, str], size: int = 173
) -> tuple[list[dict[str, Any]], set[int]]:
    items: list[dict[str, Any]] = []
    totals: set[int] = set()
    offset = 0
    while True:
        r = await h.client.get(
            "/v1/models", params={**params, "limit": size, "offset": offset}, headers=headers
        )
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        totals.add(r.json()["total"])
        offset += size
        if offset >= r.json()["total"]:
            return items, totals


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("name", lambda m: m["name"], False),
        ("-name", lambda m: m["name"], True),
        ("created", lambda m: (m["created_at"], m["name"]), False),
        ("-created", lambda m: (-m["created_at"].timestamp(), m["name"]), False),
        ("updated", lambda m: (m["updated_at"], m["name"]), False),
        ("-updated", lambda m: (-m["updated_at"].timestamp(), m["name"]), False),
    ],
)
async def test_every_sort_pages_through_the_catalogue_in_its_order(
    registry: RegistryHarness, catalogue: list[dict[str, Any]], sort: str, key: Any, reverse: bool
) -> None:
    active = [m for m in catalogue if not m["archived"]]
    items, totals = await every_page(registry, {"sort": sort}, registry.auth())
    assert [m["name"] for m in items] == [m["name"] for m in sorted(active, key=key, reverse=reverse)]
    assert totals == {990}


async def test_a_team_never_sees_another_teams_models_and_filters_combine(
    registry: RegistryHarness, catalogue: list[dict[str, Any]]
) -> None:
    viewer = registry.auth(Role.VIEWER, ["team-06"])
    items, totals = await every_page(registry, {"sort": "-updated", "include_archived": "true"}, viewer, 9)
    assert {m["team"] for m in items} == {"team-06"} and totals == {50} and len(items) == 50
    hidden = (await registry.client.get("/v1/models", params={"team": "team-07"}, headers=viewer)).json()
    assert (hidden["items"], hidden["total"]) == ([], 0)
    mine, totals = await every_page(registry, {"tag": "even", "name": "m00", "sort": "-name"}, viewer, 2)
    want = [m["name"] for m in catalogue if m["team"] == "team-06" and m["name"].startswith("m00")]
    assert [m["name"] for m in mine] == sorted(want, reverse=True) and totals == {len(want)} == {5}


async def test_a_page_of_models_costs_a_fixed_number_of_statements(
    registry: RegistryHarness, catalogue: list[dict[str, Any]]
) -> None:
    admin = registry.auth()
    for name in ("m0000", "m0001"):
        assert (await upload_version(registry, name, admin, aliases=["champion"])).status_code == 201
    seen: list[str] = []
    engine = registry.app.state.store.db.engine.sync_engine

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "outbox" not in sql and "inbox" not in sql:
            seen.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        page = (await registry.client.get("/v1/models", params={"limit": 500}, headers=admin)).json()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(page["items"]) == 500 and len(seen) <= 6, f"{len(seen)} statements for a page of 500"
    first, second, third = page["items"][:3]
    assert (first["latest_version"], first["aliases"]) == (1, {"champion": 1})
    assert (second["latest_version"], second["aliases"]) == (1, {"champion": 1})
    assert (third["latest_version"], third["aliases"]) == (None, {})
