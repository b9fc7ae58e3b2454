"""Right to erasure: ``DELETE /v1/subjects/{subject}`` removes a data subject's served rows and their
labels from the inference lake (written partitions and the unflushed buffer), by the raw id or its
keyed hash, admins only, and leaves every other subject's rows in place."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fleet_core.auth import Role
from fleet_core.events import Topic
from fleet_core.privacy import PiiHasher
from fleet_monitor.lake import (
    FEEDBACK,
    INFERENCE,
    INFERENCE_SCHEMA,
    InferenceLake,
    LakeSettings,
    partition_dir,
)
from support.monitor import MonitorHarness, feedback, inference, registered, running_monitor

SALT = "a-production-like-salt-0123456789"
HASH = PiiHasher(SALT).hash
ANA, BOB = "user-ana", "user-bob"
CREDIT, FRAUD = "credit", "fraud"


def _row(user: str | None, income: float) -> dict[str, Any]:
    """A row as the gateway logs it: the PII field ``user_id`` already hashed."""
    return {"income": income, "channel": "web", **({"user_id": HASH(user)} if user else {})}


def _serve(m: MonitorHarness, model: str) -> None:
    """Traffic of ``model`` for Ana and Bob, every row labelled:

    - ``<model>-ana-1``: row 0 is Ana's (her id in a PII field), row 1 is Bob's (a mixed batch);
    - ``<model>-ana-2``: routed by Ana's id (no PII field at all);
    - ``<model>-bob-1`` and ``<model>-bob-2``: Bob's, the same two ways.
    """
    served = [
        inference(model, 1, [_row(ANA, 1.0), _row(BOB, 2.0)], [0, 1], request_id=f"{model}-ana-1"),
        inference(model, 1, [_row(None, 3.0)], [1], request_id=f"{model}-ana-2", routing_key=HASH(ANA)),
        inference(model, 1, [_row(BOB, 4.0)], [0], request_id=f"{model}-bob-1"),
        inference(model, 1, [_row(None, 5.0)], [1], request_id=f"{model}-bob-2", routing_key=HASH(BOB)),
    ]
    m.engine.ingest(served)
    for event in served:
        m.engine.ingest_feedback(feedback(model, event.request_id, [1] * len(event.inputs)))


async def _labelled(m: MonitorHarness, model: str) -> set[tuple[str, int]]:
    r = await m.client.get(f"/v1/lake/{model}/labelled", headers=m.auth())
    assert r.status_code == 200, r.text
    return {(row["request_id"], row["row"]) for row in r.json()}


def _stored(m: MonitorHarness, table: str, model: str) -> set[tuple[str, int]]:
    assert m.engine.lake is not None
    m.engine.lake.flush()
    rows = m.engine.lake.read(table, model)
    return set(zip(rows.column("request_id").to_pylist(), rows.column("row").to_pylist(), strict=True))


BOBS = {("{m}-ana-1", 1), ("{m}-bob-1", 0), ("{m}-bob-2", 0)}


def _bobs(model: str) -> set[tuple[str, int]]:
    return {(rid.format(m=model), row) for rid, row in BOBS}


async def test_erasing_a_raw_id_removes_its_rows_and_labels_and_keeps_everyone_elses(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, pii_salt=SALT) as m:
        await m.engine.on_model_registered("e-1", registered(CREDIT))
        _serve(m, CREDIT)
        _serve(m, FRAUD)
        assert m.engine.lake is not None
        m.engine.lake.flush()
        # One more of Ana's requests, still in the buffer when the erasure comes.
        m.engine.ingest([inference(CREDIT, 1, [_row(ANA, 9.0)], [0], request_id="credit-ana-3")])
        m.engine.ingest_feedback(feedback(CREDIT, "credit-ana-3", [0]))
        assert len(await _labelled(m, CREDIT)) == 5  # the buffered request is not readable yet

        r = await m.client.delete(f"/v1/subjects/{ANA}", params={"model": CREDIT}, headers=m.auth())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["subject"] == HASH(ANA) and body["model"] == CREDIT
        assert (body["inference_rows"], body["feedback_rows"]) == (3, 3)
        assert any(p.startswith(f"{INFERENCE}/model={CREDIT}/date=") for p in body["partitions"])
        assert any(p.startswith(f"{FEEDBACK}/model={CREDIT}/date=") for p in body["partitions"])
        assert not any(f"model={FRAUD}" in p for p in body["partitions"])

        assert await _labelled(m, CREDIT) == _bobs(CREDIT)
        assert _stored(m, INFERENCE, CREDIT) == _bobs(CREDIT)
        assert _stored(m, FEEDBACK, CREDIT) == _bobs(CREDIT)
        # Bounded to one model: the other model's rows of Ana are still there.
        assert len(await _labelled(m, FRAUD)) == 5

        # The audit entry names the subject by its hash, never by the raw id.
        audits = [e.data for e in await m.published(Topic.AUDIT_RECORDED)]
        erasure = [a for a in audits if a.action.startswith("DELETE /v1/subjects")]
        assert [a.outcome for a in erasure] == ["ok"]
        assert ANA not in json.dumps([a.model_dump(mode="json") for a in audits])
        assert erasure[0].resource == f"/v1/subjects/{HASH(ANA)}"
        assert erasure[0].detail["inference_rows"] == 3


async def test_erasing_the_hashed_id_everywhere_then_again_removes_nothing_more(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, pii_salt=SALT) as m:
        _serve(m, CREDIT)
        _serve(m, FRAUD)
        assert m.engine.lake is not None
        m.engine.lake.flush()

        r = await m.client.delete(f"/v1/subjects/{HASH(ANA)}", headers=m.auth())
        assert r.status_code == 200, r.text
        assert (r.json()["inference_rows"], r.json()["feedback_rows"]) == (4, 4)
        for model in (CREDIT, FRAUD):
            assert await _labelled(m, model) == _bobs(model)
            assert _stored(m, INFERENCE, model) == _bobs(model)

        again = await m.client.delete(f"/v1/subjects/{ANA}", headers=m.auth())
        assert again.status_code == 200, again.text
        assert again.json() | {"subject": None, "model": None} == {
            "subject": None,
            "model": None,
            "inference_rows": 0,
            "feedback_rows": 0,
            "partitions": [],
        }


async def test_erasure_is_for_admins_and_validates_the_subject(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, pii_salt=SALT) as m:
        _serve(m, CREDIT)
        assert m.engine.lake is not None
        m.engine.lake.flush()

        assert (await m.client.delete(f"/v1/subjects/{ANA}")).status_code == 401
        deployer = m.auth(Role.DEPLOYER, ["*"])
        refused = await m.client.delete(f"/v1/subjects/{ANA}", headers=deployer)
        assert refused.status_code == 403, refused.text
        assert len(await _labelled(m, CREDIT)) == 5
        denied = [e.data for e in await m.published(Topic.AUDIT_RECORDED) if e.data.outcome == "denied"]
        assert [a.resource for a in denied] == [f"/v1/subjects/{HASH(ANA)}"] * 2  # never the raw id

        long = await m.client.delete(f"/v1/subjects/{'x' * 513}", headers=m.auth())
        assert long.status_code == 422 and long.json()["field"] == "subject", long.text
        nul = await m.client.delete("/v1/subjects/a%00b", headers=m.auth())
        assert nul.status_code == 422 and nul.json()["field"] == "subject", nul.text
        bad_model = await m.client.delete(f"/v1/subjects/{ANA}", params={"model": "../x"}, headers=m.auth())
        assert bad_model.status_code == 422 and bad_model.json()["field"] == "model", bad_model.text
        # A raw id with a slash reaches the route (the SDK percent-encodes it) and matches nothing here.
        slashed = await m.client.delete("/v1/subjects/users%2F42", headers=m.auth())
        assert slashed.status_code == 200 and slashed.json()["inference_rows"] == 0, slashed.text
        assert len(await _labelled(m, CREDIT)) == 5


async def test_a_raw_id_needs_the_salt_and_the_hashed_id_does_not(tmp_path: Path) -> None:
    async with running_monitor(tmp_path, mode="embedded") as m:
        m.engine.pii = None  # as in production without FLEET_PII_SALT
        _serve(m, CREDIT)
        raw = await m.client.delete(f"/v1/subjects/{ANA}", headers=m.auth())
        assert raw.status_code == 422 and raw.json()["field"] == "subject", raw.text
        hashed = await m.client.delete(f"/v1/subjects/{HASH(ANA)}", headers=m.auth())
        assert hashed.status_code == 200 and hashed.json()["inference_rows"] == 2, hashed.text


def test_files_written_before_the_routing_key_column_read_and_erase(tmp_path: Path) -> None:
    lake = InferenceLake(LakeSettings(uri=f"file://{tmp_path}/lake"))
    old_schema = pa.schema([f for f in INFERENCE_SCHEMA if f.name != "routing_key"])
    directory = partition_dir(lake.base, INFERENCE, CREDIT, "2026-11-30")
    lake.fs.create_dir(directory, recursive=True)
    when = datetime(2026, 11, 30, 9, tzinfo=UTC)
    rows = [
        {
            "request_id": rid,
            "row": 0,
            "timestamp": when,
            "version": 1,
            "arm": "primary",
            "inputs": json.dumps(_row(user, 1.0)),
            "output": "0",
            "latency_ms": 1.0,
            "status": "ok",
            "caller": None,
        }
        for rid, user in (("old-ana", ANA), ("old-bob", BOB))
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), f"{directory}/part-old.parquet")
    assert lake.read(INFERENCE, CREDIT).column("routing_key").to_pylist() == [None, None]

    erased = lake.erase(HASH(ANA), model=CREDIT)
    assert (erased.inference_rows, erased.partitions) == (1, [f"{INFERENCE}/model={CREDIT}/date=2026-11-30"])
    assert lake.read(INFERENCE, CREDIT).column("request_id").to_pylist() == ["old-bob"]
    assert not os.path.exists(f"{directory}/part-old.parquet")
    assert [p.name.startswith("part-") for p in Path(directory).iterdir()] == [True]  # no staging left
