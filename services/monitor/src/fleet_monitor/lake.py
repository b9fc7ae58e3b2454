"""The inference lake: every served row and every label, as Parquet, partitioned by model and day.

Layout (Hive-style, readable by pyarrow, DuckDB, Spark or pandas as it is)::

    <lake>/inference/model=<name>/date=<YYYY-MM-DD>/part-<time>-<uuid>.parquet
    <lake>/feedback/model=<name>/date=<YYYY-MM-DD>/part-<time>-<uuid>.parquet

``<lake>`` is a ``file://`` directory (embedded) or an ``s3://bucket/prefix`` (production); both go
through pyarrow's filesystems. Rows are buffered and written in batches (``flush``); partitions
older than the retention are deleted whole. ``labelled`` joins the two tables on (request id, row)
so the retrainer can build a dataset from real traffic.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs

from fleet_core.events import MODEL_NAME_PATTERN

INFERENCE = "inference"
FEEDBACK = "feedback"

INFERENCE_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("version", pa.int32()),
        ("arm", pa.string()),
        ("inputs", pa.string()),
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),
        ("caller", pa.string()),
    ]
)
FEEDBACK_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("version", pa.int32()),
        ("label", pa.string()),
        ("source", pa.string()),
    ]
)
SCHEMAS = {INFERENCE: INFERENCE_SCHEMA, FEEDBACK: FEEDBACK_SCHEMA}


@dataclass(frozen=True, slots=True)
class LakeSettings:
    uri: str
    retention_days: int = 30
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str | None = None
    s3_secure: bool = True


def open_filesystem(settings: LakeSettings) -> tuple[fs.FileSystem, str]:
    """The filesystem and base path for ``settings.uri`` (``file://`` or ``s3://``)."""
    parsed = urlparse(settings.uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme else settings.uri
        local = fs.LocalFileSystem()
        local.create_dir(path, recursive=True)
        return local, path.rstrip("/")
    if parsed.scheme == "s3":
        endpoint = settings.s3_endpoint
        scheme = "https" if settings.s3_secure else "http"
        if endpoint and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        s3 = fs.S3FileSystem(
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region or "us-east-1",
            endpoint_override=endpoint,
            scheme=scheme,
        )
        return s3, f"{parsed.netloc}{parsed.path}".rstrip("/")
    raise ValueError(f"lake URI {settings.uri!r}: use file:// or s3://")


_MODEL_NAME = re.compile(MODEL_NAME_PATTERN.removeprefix("^").removesuffix("$"))


def partition_dir(base: str, table: str, model: str, day: str) -> str:
    """The directory of one partition. Refuses a model name the registry would not accept (``..``,
    ``/``, NUL, surrogates): the event contracts already reject them, and a name that slipped past
    must never become a path outside the lake."""
    if not isinstance(model, str) or _MODEL_NAME.fullmatch(model) is None:
        raise ValueError(f"refusing a lake partition for the model name {model!r}: not a valid model name")
    return f"{base}/{table}/model={model}/date={day}"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class InferenceLake:
    """Buffers rows in memory and writes them as Parquet partitions."""

    def __init__(self, settings: LakeSettings, *, max_buffered_rows: int = 200_000) -> None:
        self.settings = settings
        self.fs, self.base = open_filesystem(settings)
        self.max_buffered_rows = max_buffered_rows
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._buffered = 0
        self.rows_written = 0
        self.rows_dropped = 0

    # ----------------------------------------------------------------- writing

    def add_inference(
        self,
        *,
        model: str,
        request_id: str,
        timestamp: datetime,
        version: int,
        arm: str,
        inputs: list[dict[str, Any]],
        outputs: list[Any] | None,
        latency_ms: float,
        status: str,
        caller: str | None,
    ) -> None:
        rows = [
            {
                "request_id": request_id,
                "row": i,
                "timestamp": timestamp,
                "version": version,
                "arm": arm,
                "inputs": _json(row),
                "output": _json(outputs[i]) if outputs is not None and i < len(outputs) else None,
                "latency_ms": latency_ms,
                "status": status,
                "caller": caller,
            }
            for i, row in enumerate(inputs)
        ]
        self._add(INFERENCE, model, timestamp, rows)

    def add_feedback(
        self,
        *,
        model: str,
        request_id: str,
        timestamp: datetime,
        version: int | None,
        labels: list[Any],
        source: str | None,
    ) -> None:
        rows = [
            {
                "request_id": request_id,
                "row": i,
                "timestamp": timestamp,
                "version": version,
                "label": _json(label),
                "source": source,
            }
            for i, label in enumerate(labels)
        ]
        self._add(FEEDBACK, model, timestamp, rows)

    def _add(self, table: str, model: str, timestamp: datetime, rows: list[dict[str, Any]]) -> None:
        day = timestamp.astimezone(UTC).date().isoformat()
        partition_dir(self.base, table, model, day)  # refuse a bad name now, not at the next flush
        with self._lock:
            if self._buffered + len(rows) > self.max_buffered_rows:
                self.rows_dropped += len(rows)  # the store is away and the buffer is full: shed, counted
                return
            self._buffers.setdefault((table, model, day), []).extend(rows)
            self._buffered += len(rows)

    @property
    def buffered(self) -> int:
        return self._buffered

    def flush(self) -> int:
        """Write every buffer as one Parquet file per partition; returns the rows written.

        A partition that fails to write stays buffered and is retried on the next flush."""
        with self._lock:
            buffers, self._buffers, self._buffered = self._buffers, {}, 0
        written = 0
        failed: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        error: Exception | None = None
        for (table, model, day), rows in buffers.items():
            arrow = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
            directory = partition_dir(self.base, table, model, day)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            try:
                self.fs.create_dir(directory, recursive=True)
                pq.write_table(
                    arrow, f"{directory}/part-{stamp}-{uuid.uuid4().hex[:12]}.parquet", filesystem=self.fs
                )
                written += len(rows)
            except Exception as exc:
                failed[(table, model, day)] = rows
                error = exc
        if failed:
            with self._lock:
                for key, rows in failed.items():
                    self._buffers.setdefault(key, [])[:0] = rows
                    self._buffered += len(rows)
        self.rows_written += written
        if error is not None:
            raise error
        return written

    # ----------------------------------------------------------------- reading

    def _dataset(self, table: str) -> ds.Dataset | None:
        root = f"{self.base}/{table}"
        if self.fs.get_file_info(root).type == fs.FileType.NotFound:
            return None
        return ds.dataset(
            root,
            filesystem=self.fs,
            format="parquet",
            schema=_with_partitions(SCHEMAS[table]),
            partitioning="hive",
        )

    def read(self, table: str, model: str, *, since: date | None = None) -> pa.Table:
        """Every row of ``model`` in ``table``, from day ``since`` on."""
        dataset = self._dataset(table)
        schema = _with_partitions(SCHEMAS[table])
        if dataset is None:
            return schema.empty_table()
        condition = ds.field("model") == model
        if since is not None:
            condition = condition & (ds.field("date") >= since.isoformat())
        return dataset.to_table(filter=condition)

    def labelled(self, model: str, *, since: date | None = None) -> pa.Table:
        """Served rows joined with their labels: inputs, output, label, version, timestamp."""
        served = self.read(INFERENCE, model, since=since).select(
            ["request_id", "row", "timestamp", "version", "arm", "inputs", "output"]
        )
        labels = self.read(FEEDBACK, model, since=since).select(["request_id", "row", "label"])
        if served.num_rows == 0 or labels.num_rows == 0:
            return served.slice(0, 0).append_column("label", pa.array([], pa.string()))
        # The latest label of a row wins when feedback was sent twice.
        labels = (
            labels.group_by(["request_id", "row"])
            .aggregate([("label", "max")])
            .rename_columns(["request_id", "row", "label"])
        )
        return served.join(labels, keys=["request_id", "row"], join_type="inner").sort_by("timestamp")

    def partitions(self, table: str) -> list[tuple[str, str]]:
        """(model, day) of every partition of ``table``."""
        root = f"{self.base}/{table}"
        out: list[tuple[str, str]] = []
        if self.fs.get_file_info(root).type == fs.FileType.NotFound:
            return out
        for model_dir in self.fs.get_file_info(fs.FileSelector(root)):
            if model_dir.type != fs.FileType.Directory or not model_dir.base_name.startswith("model="):
                continue
            for day_dir in self.fs.get_file_info(fs.FileSelector(model_dir.path)):
                if day_dir.type == fs.FileType.Directory and day_dir.base_name.startswith("date="):
                    out.append((model_dir.base_name[6:], day_dir.base_name[5:]))
        return sorted(out)

    def apply_retention(self, today: date | None = None) -> list[str]:
        """Delete partitions older than ``retention_days``; returns what was deleted."""
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=self.settings.retention_days)
        deleted: list[str] = []
        for table in (INFERENCE, FEEDBACK):
            for model, day in self.partitions(table):
                if day < cutoff.isoformat():
                    path = f"{self.base}/{table}/model={model}/date={day}"
                    self.fs.delete_dir(path)
                    deleted.append(path)
        return deleted


def _with_partitions(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("model", pa.string())).append(pa.field("date", pa.string()))
