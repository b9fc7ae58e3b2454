"""The inference lake: every served row and every label, as Parquet, partitioned by model and day.

Layout (Hive-style, readable by pyarrow, DuckDB, Spark or pandas as it is)::

    <lake>/inference/model=<name>/date=<YYYY-MM-DD>/part-<time>-<uuid>.parquet
    <lake>/feedback/model=<name>/date=<YYYY-MM-DD>/part-<time>-<uuid>.parquet

``<lake>`` is a ``file://`` directory (embedded) or an ``s3://bucket/prefix`` (production); both go
through pyarrow's filesystems. Rows are buffered and written in batches (``flush``); partitions
older than the retention are deleted whole. ``labelled`` joins the two tables on (request id, row)
so the retrainer can build a dataset from real traffic. ``erase`` removes one data subject's rows
(right to erasure), rewriting only the files that held them.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.compute as pc
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
        # Hashed by the gateway like PII: kept so that a subject's routed requests can be erased.
        # Files written before it existed read it as null.
        ("routing_key", pa.string()),
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


@dataclass(slots=True)
class Erasure:
    """What ``InferenceLake.erase`` removed: rows per table and the partitions it rewrote."""

    inference_rows: int = 0
    feedback_rows: int = 0
    partitions: list[str] = field(default_factory=list)
    """``<table>/model=<name>/date=<day>``, relative to the lake's root."""


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


def is_model_name(name: object) -> bool:
    """True for a name the registry would accept (and so a safe partition path segment)."""
    return isinstance(name, str) and _MODEL_NAME.fullmatch(name) is not None


def partition_dir(base: str, table: str, model: str, day: str) -> str:
    """The directory of one partition. Refuses a model name the registry would not accept (``..``,
    ``/``, NUL, surrogates): the event contracts already reject them, and a name that slipped past
    must never become a path outside the lake."""
    if not is_model_name(model):
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
        # Held by whatever writes or deletes files (flush, erase, retention): an erasure must not
        # miss rows that a flush has taken out of the buffer but not written yet.
        self._files = threading.RLock()
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
        routing_key: str | None = None,
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
                "routing_key": routing_key,
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
        with self._files:
            return self._flush()

    def _flush(self) -> int:
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
        with self._files:
            for table in (INFERENCE, FEEDBACK):
                for model, day in self.partitions(table):
                    if day < cutoff.isoformat():
                        path = f"{self.base}/{table}/model={model}/date={day}"
                        self.fs.delete_dir(path)
                        deleted.append(path)
        return deleted

    # ----------------------------------------------------------------- erasure

    def erase(self, subject: str, *, model: str | None = None) -> Erasure:
        """Remove every row of the data subject ``subject`` (its keyed hash, ``sha256:<hex>``, as the
        gateway logs it), from every model or only ``model``.

        An inference row is the subject's when any value in its inputs (a PII field) or its routing
        key is ``subject``; its labels (feedback rows of the same request id and row) go with it.
        Buffered rows are flushed first, so they are erased like written ones, and rows that arrive
        during the erasure are taken out of the buffer at the end. Each file holding such rows is
        rewritten without them (the new file first, then the old one deleted), and only those."""
        if model is not None:
            partition_dir(self.base, INFERENCE, model, "-")  # a valid name, or ValueError
        # The JSON form of the value: a hash has no character JSON escapes, so this is exact.
        needle = orjson.dumps(subject).decode()
        result = Erasure()
        with self._files:
            self._flush()
            erased: dict[str, set[tuple[str, int]]] = {}
            for name, day in self.partitions(INFERENCE):
                if model is not None and name != model:
                    continue

                def of_subject(table: pa.Table) -> pa.Array:
                    inputs = pc.match_substring(table.column("inputs"), needle)
                    routed = pc.equal(table.column("routing_key"), subject)
                    return pc.fill_null(pc.or_kleene(inputs, routed), False)

                removed = self._rewrite(INFERENCE, name, day, of_subject, result)
                if removed:
                    erased.setdefault(name, set()).update(removed)
            for name, day in self.partitions(FEEDBACK):
                keys = erased.get(name)
                if not keys:
                    continue

                def labels_of(table: pa.Table, keys: set[tuple[str, int]] = keys) -> pa.Array:
                    pairs = zip(
                        table.column("request_id").to_pylist(), table.column("row").to_pylist(), strict=True
                    )
                    return pa.array([pair in keys for pair in pairs], pa.bool_())

                self._rewrite(FEEDBACK, name, day, labels_of, result)
            self._erase_buffered(needle, subject, model, erased, result)
        return result

    def _rewrite(
        self,
        table: str,
        model: str,
        day: str,
        matches: Callable[[pa.Table], pa.Array],
        result: Erasure,
    ) -> set[tuple[str, int]]:
        """Rewrite each file of one partition that has rows ``matches`` selects; returns the
        (request id, row) of the rows removed."""
        directory = partition_dir(self.base, table, model, day)
        removed: set[tuple[str, int]] = set()
        for info in self.fs.get_file_info(fs.FileSelector(directory)):
            if info.type != fs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            rows = _conform(pq.read_table(info.path, filesystem=self.fs), SCHEMAS[table])
            mask = matches(rows)
            hits = rows.filter(mask)
            if hits.num_rows == 0:
                continue
            removed.update(
                zip(hits.column("request_id").to_pylist(), hits.column("row").to_pylist(), strict=True)
            )
            kept = rows.filter(pc.invert(mask))
            if kept.num_rows:
                self._write_file(directory, kept)
            self.fs.delete_file(info.path)
            partition = f"{table}/model={model}/date={day}"
            if partition not in result.partitions:
                result.partitions.append(partition)
        if table == INFERENCE:
            result.inference_rows += len(removed)
        else:
            result.feedback_rows += len(removed)
        return removed

    def _write_file(self, directory: str, rows: pa.Table) -> None:
        """One new Parquet file in ``directory``, whole or not at all for readers: locally written
        under a hidden name (readers skip ``.`` files) and renamed; on S3 an object appears only
        once its upload completes."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        if isinstance(self.fs, fs.LocalFileSystem):
            staging = f"{directory}/.{name}"
            pq.write_table(rows, staging, filesystem=self.fs)
            self.fs.move(staging, f"{directory}/{name}")
        else:
            pq.write_table(rows, f"{directory}/{name}", filesystem=self.fs)

    def _erase_buffered(
        self,
        needle: str,
        subject: str,
        model: str | None,
        erased: dict[str, set[tuple[str, int]]],
        result: Erasure,
    ) -> None:
        """Take the subject's rows that arrived during the erasure (and their labels) out of the
        buffer."""

        def of_subject(row: dict[str, Any]) -> bool:
            return needle in row["inputs"] or row.get("routing_key") == subject

        with self._lock:
            for (table, name, _day), rows in self._buffers.items():
                if table != INFERENCE or (model is not None and name != model):
                    continue
                kept = [r for r in rows if not of_subject(r)]
                if len(kept) < len(rows):
                    erased.setdefault(name, set()).update(
                        (r["request_id"], r["row"]) for r in rows if of_subject(r)
                    )
                    result.inference_rows += len(rows) - len(kept)
                    self._buffered -= len(rows) - len(kept)
                    rows[:] = kept
            for (table, name, _day), rows in self._buffers.items():
                keys = erased.get(name)
                if table != FEEDBACK or not keys:
                    continue
                kept = [r for r in rows if (r["request_id"], r["row"]) not in keys]
                result.feedback_rows += len(rows) - len(kept)
                self._buffered -= len(rows) - len(kept)
                rows[:] = kept


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (one file, maybe written before a column was added) in ``schema``: missing
    columns as nulls, columns in schema order."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _with_partitions(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("model", pa.string())).append(pa.field("date", pa.string()))
