"""The inference lake: Parquet partitioned by model and day, labels joined by request and row,
old partitions deleted by retention."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fleet_core.events import EventDecodeError, Topic, make_event, parse_event
from fleet_monitor.lake import FEEDBACK, INFERENCE, InferenceLake, LakeSettings
from support.monitor import feedback, inference

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _lake(tmp_path: Path, **kw: int) -> InferenceLake:
    return InferenceLake(LakeSettings(uri=f"file://{tmp_path / 'lake'}", **kw))


def _serve(
    lake: InferenceLake, request_id: str, when: datetime, rows: int = 2, model: str = "credit"
) -> None:
    lake.add_inference(
        model=model,
        request_id=request_id,
        timestamp=when,
        version=1,
        arm="primary",
        inputs=[{"x": float(i)} for i in range(rows)],
        outputs=[i % 2 for i in range(rows)],
        latency_ms=3.0,
        status="ok",
        caller="c",
    )


def test_rows_land_in_model_and_day_partitions(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _serve(lake, "r1", NOW)
    _serve(lake, "r2", NOW - timedelta(days=1))
    _serve(lake, "r3", NOW, model="churn")
    assert lake.flush() == 6
    assert lake.partitions(INFERENCE) == [
        ("churn", "2026-11-25"),
        ("credit", "2026-11-24"),
        ("credit", "2026-11-25"),
    ]
    files = list((tmp_path / "lake" / "inference" / "model=credit" / "date=2026-11-25").glob("*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 2
    assert lake.read(INFERENCE, "credit").num_rows == 4
    assert lake.read(INFERENCE, "credit", since=date(2026, 11, 25)).num_rows == 2


def test_labelled_joins_feedback_on_request_and_row_latest_label_wins(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _serve(lake, "r1", NOW)
    _serve(lake, "r2", NOW)
    lake.add_feedback(model="credit", request_id="r1", timestamp=NOW, version=1, labels=[0, 1], source="crm")
    lake.flush()
    table = lake.labelled("credit")
    assert table.num_rows == 2
    assert table.column("request_id").to_pylist() == ["r1", "r1"]
    assert sorted(table.column("label").to_pylist()) == ["0", "1"]
    assert lake.read(FEEDBACK, "credit").num_rows == 2


def test_retention_deletes_old_partitions_only(tmp_path: Path) -> None:
    lake = _lake(tmp_path, retention_days=7)
    _serve(lake, "old", NOW - timedelta(days=10))
    _serve(lake, "new", NOW - timedelta(days=2))
    lake.flush()
    deleted = lake.apply_retention(today=NOW.date())
    assert len(deleted) == 1 and "2026-11-15" in deleted[0]
    assert [day for _, day in lake.partitions(INFERENCE)] == ["2026-11-23"]


def test_a_failed_write_keeps_the_rows_for_the_next_flush(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _serve(lake, "r1", NOW)
    blocker = tmp_path / "lake" / "inference"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        lake.flush()
    assert lake.buffered == 2
    blocker.unlink()
    assert lake.flush() == 2


def test_labelled_is_empty_not_an_error_when_no_label_arrived(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _serve(lake, "r1", NOW)
    lake.flush()
    table = lake.labelled("credit")
    assert table.num_rows == 0 and "label" in table.column_names


BAD_NAMES = ["../../etc", "..", "a/b", "/abs", "a\x00b", "x\ud800", "Upper", "a\n", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_lake_refuses_model_names_that_are_not_names(tmp_path: Path, name: str) -> None:
    lake = _lake(tmp_path)
    with pytest.raises(ValueError, match="not a valid model name"):
        _serve(lake, "r1", NOW, model=name)
    with pytest.raises(ValueError, match="not a valid model name"):
        lake.add_feedback(model=name, request_id="r1", timestamp=NOW, version=1, labels=[1], source="t")
    assert lake.buffered == 0
    lake.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"], "nothing is written beside the lake"
    assert lake.partitions(INFERENCE) == []


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("topic", [Topic.INFERENCE_LOGGED, Topic.INFERENCE_FEEDBACK])
def test_events_naming_such_a_model_fail_validation(topic: Topic, name: str) -> None:
    served = inference("credit", 1, [{"x": 1.0}], [0])
    payload = served if topic is Topic.INFERENCE_LOGGED else feedback("credit", served.request_id, [1])
    raw = make_event(topic, payload, source="/test").model_dump(mode="json")
    raw["data"]["model"] = name
    with pytest.raises(EventDecodeError, match=r"data\.model"):
        parse_event(topic, raw)
    # As bytes on the wire too (surrogates as JSON escapes, which is how they would arrive).
    with pytest.raises(EventDecodeError):
        parse_event(topic, json.dumps(raw).encode())
    raw["data"]["model"] = "credit"
    assert parse_event(topic, raw).data.model == "credit"
