"""/v1/lake: what the inference lake holds for a model, and its labelled rows for retraining."""

from __future__ import annotations

import io
from datetime import date
from typing import Literal

import orjson
import pyarrow.parquet as pq
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fleet_core.errors import NotFound, Unavailable
from fleet_monitor.api.deps import EngineDep, LakeDep, Offset, Reader
from fleet_monitor.api.schemas import LakeSummary
from fleet_monitor.lake import FEEDBACK, INFERENCE, InferenceLake

router = APIRouter(prefix="/v1/lake", tags=["lake"])

MAX_PAGE_ROWS = 1_000_000
"""Most rows in one page. The retrainer reads up to this many in one call today; clients that want
more (or smaller responses) page with ``offset``."""


def need_lake(lake: InferenceLake | None) -> InferenceLake:
    if lake is None:
        raise Unavailable("the inference lake is disabled (FLEET_LAKE_ENABLED=false)")
    return lake


@router.get("/{model}", summary="Days of served rows and labels stored for a model")
async def lake_summary(model: str, lake: LakeDep, engine: EngineDep, reader: Reader) -> LakeSummary:
    reader.require(engine.team_of(model))
    store = need_lake(lake)
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
    summary="Served rows joined with their labels, one page",
    description="Each row: request id, row index, timestamp, version, arm, inputs and output (JSON "
    "text) and the label (JSON text). `format=parquet` returns a Parquet file; `json` a list. A page "
    "holds at most `limit` rows, oldest first: the newest ones when `offset` is 0, then the `limit` "
    "before the `offset` newest. `X-Total-Count` carries the number of labelled rows, and a `Link` "
    'header with `rel="next"` the next (older) page while there is one. Needs a `viewer` token of '
    "the model's team.",
    responses={
        200: {
            "content": {"application/vnd.apache.parquet": {}, "application/json": {}},
            "headers": {
                "X-Total-Count": {"description": "Labelled rows in all pages", "schema": {"type": "integer"}},
                "Link": {"description": "The next page (RFC 8288, rel=next)", "schema": {"type": "string"}},
            },
        }
    },
)
async def labelled_rows(
    model: str,
    request: Request,
    lake: LakeDep,
    engine: EngineDep,
    reader: Reader,
    since: date | None = Query(default=None, description="First day to include (UTC)"),
    format: Literal["parquet", "json"] = "json",
    limit: int = Query(default=10_000, ge=1, le=MAX_PAGE_ROWS, description="Rows in this page"),
    offset: Offset = 0,
) -> Response:
    reader.require(engine.team_of(model))
    store = need_lake(lake)
    table = store.labelled(model, since=since)
    if table.num_rows == 0 and not any(m == model for m, _ in store.partitions(INFERENCE)):
        raise NotFound(f"the lake holds no rows for {model!r}", field="model")
    total = table.num_rows
    end = max(total - offset, 0)
    start = max(end - limit, 0)
    table = table.slice(start, end - start)
    headers = {"X-Total-Count": str(total)}
    if start > 0:
        next_url = request.url.include_query_params(offset=offset + limit, limit=limit)
        headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'
    if format == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return Response(sink.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)
    columns = [c for c in table.column_names if c != "timestamp"]
    rows = table.select(columns).to_pylist()
    for row, ts in zip(rows, table.column("timestamp").to_pylist(), strict=True):
        row["timestamp"] = ts.isoformat() if ts is not None else None
    return Response(orjson.dumps(rows), media_type="application/json", headers=headers)
