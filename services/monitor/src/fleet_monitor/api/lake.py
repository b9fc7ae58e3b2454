"""/v1/lake: what the inference lake holds for a model, and its labelled rows for retraining."""

from __future__ import annotations

import io
from datetime import date
from typing import Literal

import orjson
import pyarrow.parquet as pq
from fastapi import APIRouter, Query
from fastapi.responses import Response

from fleet_core.errors import NotFound, Unavailable
from fleet_monitor.api.deps import LakeDep, Reader
from fleet_monitor.api.schemas import LakeSummary
from fleet_monitor.lake import FEEDBACK, INFERENCE, InferenceLake

router = APIRouter(prefix="/v1/lake", tags=["lake"])


def _need(lake: InferenceLake | None) -> InferenceLake:
    if lake is None:
        raise Unavailable("the inference lake is disabled (FLEET_LAKE_ENABLED=false)")
    return lake


@router.get("/{model}", summary="Days of served rows and labels stored for a model")
async def lake_summary(model: str, lake: LakeDep, _: Reader) -> LakeSummary:
    store = _need(lake)
    partitions = {
        table: [day for m, day in store.partitions(table) if m == model] for table in (INFERENCE, FEEDBACK)
    }
    return LakeSummary(
        model=model,
        partitions=partitions,
        buffered_rows=store.buffered,
        rows_written=store.rows_written,
        rows_dropped=store.rows_dropped,
    )


@router.get(
    "/{model}/labelled",
    summary="Served rows joined with their labels",
    description="Each row: request id, row index, timestamp, version, arm, inputs and output (JSON "
    "text) and the label (JSON text). `format=parquet` returns a Parquet file; `json` a list.",
    responses={200: {"content": {"application/vnd.apache.parquet": {}, "application/json": {}}}},
)
async def labelled_rows(
    model: str,
    lake: LakeDep,
    _: Reader,
    since: date | None = Query(default=None, description="First day to include (UTC)"),
    format: Literal["parquet", "json"] = "json",
    limit: int = Query(default=10_000, ge=1, le=1_000_000),
) -> Response:
    store = _need(lake)
    table = store.labelled(model, since=since)
    if table.num_rows == 0 and not any(m == model for m, _ in store.partitions(INFERENCE)):
        raise NotFound(f"the lake holds no rows for {model!r}", field="model")
    table = table.slice(max(table.num_rows - limit, 0))
    if format == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return Response(sink.getvalue(), media_type="application/vnd.apache.parquet")
    columns = [c for c in table.column_names if c != "timestamp"]
    rows = table.select(columns).to_pylist()
    for row, ts in zip(rows, table.column("timestamp").to_pylist(), strict=True):
        row["timestamp"] = ts.isoformat() if ts is not None else None
    return Response(orjson.dumps(rows), media_type="application/json")
