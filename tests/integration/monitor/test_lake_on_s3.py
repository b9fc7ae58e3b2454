"""The inference lake on the S3 API (moto server): the production layout, partitions, the labelled
join and retention, through the same code as the local directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from fleet_monitor.lake import INFERENCE, InferenceLake, LakeSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 9, tzinfo=UTC)


def s3_lake(s3_server: dict[str, str], bucket: str, **settings: Any) -> tuple[Any, InferenceLake]:
    """A fresh bucket on the S3 server, a boto3 client to look into it, and a lake under its prefix."""
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint"],
        aws_access_key_id=s3_server["access_key"],
        aws_secret_access_key=s3_server["secret_key"],
        region_name=s3_server["region"],
    )
    s3.create_bucket(Bucket=bucket)
    lake = InferenceLake(
        LakeSettings(
            uri=f"s3://{bucket}/prod",
            s3_endpoint=s3_server["endpoint"],
            s3_access_key=s3_server["access_key"],
            s3_secret_key=s3_server["secret_key"],
            s3_region=s3_server["region"],
            **settings,
        )
    )
    return s3, lake


def test_the_lake_writes_reads_joins_and_expires_on_s3(s3_server: dict[str, str]) -> None:
    s3, lake = s3_lake(s3_server, "fleet-lake", retention_days=7)
    for request_id, when in (("old", NOW - timedelta(days=9)), ("r1", NOW), ("r2", NOW)):
        lake.add_inference(
            model="credit",
            request_id=request_id,
            timestamp=when,
            version=2,
            arm="primary",
            inputs=[{"income": 50.0}],
            outputs=[1],
            latency_ms=4.0,
            status="ok",
            caller=None,
        )
    lake.add_feedback(model="credit", request_id="r2", timestamp=NOW, version=2, labels=[0], source="crm")
    assert lake.flush() == 4

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fleet-lake")["Contents"])
    assert any(k.startswith("prod/inference/model=credit/date=2026-11-25/part-") for k in keys)
    assert any(k.startswith("prod/feedback/model=credit/date=2026-11-25/part-") for k in keys)
    assert lake.read(INFERENCE, "credit").num_rows == 3

    labelled = lake.labelled("credit")
    assert labelled.column("request_id").to_pylist() == ["r2"] and labelled.column("label").to_pylist() == [
        "0"
    ]

    deleted = lake.apply_retention(today=NOW.date())
    assert deleted == ["fleet-lake/prod/inference/model=credit/date=2026-11-16"]
    assert [day for _, day in lake.partitions(INFERENCE)] == ["2026-11-25"]


def test_erasure_rewrites_only_the_files_holding_the_subject_on_s3(s3_server: dict[str, str]) -> None:
    s3, lake = s3_lake(s3_server, "fleet-lake-erasure")
    ana, bob = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    for request_id, when, user, key in (
        ("ana-1", NOW, ana, None),
        ("bob-1", NOW, bob, None),
        ("ana-2", NOW - timedelta(days=1), None, ana),
        ("bob-2", NOW - timedelta(days=2), bob, None),
    ):
        lake.add_inference(
            model="credit",
            request_id=request_id,
            timestamp=when,
            version=2,
            arm="primary",
            inputs=[{"email": user, "income": 50.0} if user else {"income": 50.0}],
            outputs=[1],
            latency_ms=4.0,
            status="ok",
            caller=None,
            routing_key=key,
        )
        lake.add_feedback(
            model="credit", request_id=request_id, timestamp=NOW, version=2, labels=[0], source="crm"
        )
    lake.flush()

    def objects() -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket="fleet-lake-erasure")["Contents"]}

    before = objects()
    erased = lake.erase(ana)
    assert (erased.inference_rows, erased.feedback_rows) == (2, 2)
    assert sorted(erased.partitions) == [
        "feedback/model=credit/date=2026-11-25",
        "inference/model=credit/date=2026-11-24",
        "inference/model=credit/date=2026-11-25",
    ]
    after = objects()
    untouched = [k for k in before if "inference/model=credit/date=2026-11-23/" in k]
    assert untouched and set(untouched) <= after, "a file without the subject was rewritten"
    assert sorted(lake.read(INFERENCE, "credit").column("request_id").to_pylist()) == ["bob-1", "bob-2"]
    assert sorted(lake.labelled("credit").column("request_id").to_pylist()) == ["bob-1", "bob-2"]
    assert lake.erase(ana).inference_rows == 0
