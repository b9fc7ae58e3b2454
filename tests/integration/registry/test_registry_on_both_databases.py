"""The registry behaves the same on SQLite (embedded) and PostgreSQL (production): the whole
catalogue round-trips, and concurrent registrations never share or lose a version number."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from pathlib import Path

import pytest

from support.registry import RegistryHarness, running_registry, skops_model, upload_version

pytestmark = pytest.mark.integration

DATA = b"x0,x1,label\n1,2,0\n3,4,1\n5,6,1\n"


async def test_models_versions_aliases_datasets_and_lineage_round_trip(db_url: str, tmp_path: Path) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth(subject="ana")
        client = h.client
        created = await client.post(
            "/v1/models", json={"name": "churn", "team": "growth", "tags": ["tabular"]}, headers=admin
        )
        assert created.status_code == 201, created.text
        assert datetime.fromisoformat(created.json()["created_at"]).utcoffset() is not None
        assert (
            await client.post("/v1/datasets", json={"name": "events", "team": "growth"}, headers=admin)
        ).is_success
        dv = await client.post(
            "/v1/datasets/events/versions",
            data={"metadata": '{"row_count": 3, "format": "csv", "schema": {"x0": "int"}}'},
            files={"file": ("events.csv", DATA)},
            headers=admin,
        )
        assert dv.status_code == 201, dv.text

        v1 = await upload_version(
            h,
            "churn",
            admin,
            artifact=skops_model(1),
            dataset_version={"dataset": "events", "version": 1},
            hyperparameters={"C": 1.0, "penalty": "l2", "classes": [0, 1]},
            aliases=["champion"],
        )
        v2 = await upload_version(
            h, "churn", admin, artifact=skops_model(2), origin="retrain", parent_version=1
        )
        assert (v1.status_code, v2.status_code) == (201, 201), v2.text
        await client.patch("/v1/models/churn/versions/2", json={"tags": ["candidate"]}, headers=admin)
        await client.put("/v1/models/churn/aliases/challenger", json={"version": 2}, headers=admin)

        shown = (await client.get("/v1/models/churn/versions/1", headers=admin)).json()
        assert shown == v1.json() | {"aliases": ["champion"]}
        assert shown["hyperparameters"] == {"C": 1.0, "penalty": "l2", "classes": [0, 1]}
        model = (await client.get("/v1/models/churn", headers=admin)).json()
        assert (model["latest_version"], model["aliases"]) == (2, {"champion": 1, "challenger": 2})
        assert [
            m["name"] for m in (await client.get("/v1/models?tag=tabular", headers=admin)).json()["items"]
        ] == ["churn"]
        assert (await client.get("/v1/models/churn/aliases/champion", headers=admin)).json()["version"] == 1

        first = (await client.get("/v1/models/churn/versions/1/lineage", headers=admin)).json()
        assert first["dataset_version"]["content_hash"] == hashlib.sha256(DATA).hexdigest()
        assert first["dataset_version"]["schema"] == {"x0": "int"}
        assert [c["version"] for c in first["children"]] == [2]
        second = (await client.get("/v1/models/churn/versions/2/lineage", headers=admin)).json()
        assert (second["origin"], second["parent"]["version"]) == ("retrain", 1)
        assert second["parent"]["dataset_version"]["dataset"] == "events"
        same = await client.post(
            "/v1/datasets/events/versions",
            data={"metadata": '{"row_count": 3}'},
            files={"file": ("again.csv", DATA)},
            headers=admin,
        )
        assert (same.status_code, same.json()["version"]) == (200, 1)
        audit = (await client.get("/v1/audit?actor=ana", headers=admin)).json()["items"]
        assert [e["action"] for e in reversed(audit)] == [
            "model.create",
            "dataset.create",
            "dataset.version.create",
            "version.register",
            "version.register",
            "version.update",
            "alias.set",
        ]


async def registrations(h: RegistryHarness) -> tuple[list[int], int, int]:
    """Version numbers, `version.register` audit entries and staged events of model `m`."""
    admin = h.auth()
    versions = (await h.client.get("/v1/models/m/versions?limit=500", headers=admin)).json()["items"]
    audited = (await h.client.get("/v1/audit?action=version.register&limit=500", headers=admin)).json()[
        "total"
    ]
    return sorted(v["version"] for v in versions), audited, await h.app.state.relay.pending()


async def test_two_registrations_racing_for_the_same_version_yield_one_201_and_one_409(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        for number in (7, 8, 9):
            racing = await asyncio.gather(
                upload_version(h, "m", admin, artifact=skops_model(2 * number), version=number),
                upload_version(h, "m", admin, artifact=skops_model(2 * number + 1), version=number),
            )
            assert sorted(r.status_code for r in racing) == [201, 409], [r.text for r in racing]
            loser = next(r for r in racing if r.status_code == 409)
            assert loser.json()["field"] == "version"
        # The losers left nothing behind: no version, no audit entry, no event.
        assert await registrations(h) == ([7, 8, 9], 3, 3)


async def test_concurrent_registrations_without_a_number_each_get_the_next_one(
    db_url: str, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        racing = await asyncio.gather(
            *(upload_version(h, "m", admin, artifact=skops_model(i)) for i in range(5))
        )
        assert [r.status_code for r in racing] == [201] * 5, [r.text for r in racing]
        assert sorted(r.json()["version"] for r in racing) == [1, 2, 3, 4, 5]
        assert await registrations(h) == ([1, 2, 3, 4, 5], 5, 5)
