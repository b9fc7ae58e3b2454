"""The inference lake: Parquet partitioned by model and day, labels joined by request and row,
old partitions deleted by retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fleet_monitor.lake import FEEDBACK, INFERENCE, InferenceLake, LakeSettings

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
