"""A retraining dataset: the version's training data plus labelled traffic from the inference
lake, with the newest labelled rows held out so champion and candidate are judged on the data the
model now faces.

Labelled rows come from the monitor's ``GET /v1/lake/{model}/labelled``: ``inputs`` and ``label``
are JSON text. The dataset is content-hashed (the same rows give the same hash, so registering it
twice yields one dataset version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd


@dataclass(frozen=True)
class Assembled:
    """What a job trains and judges on."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    target: str
    base_rows: int
    traffic_rows: int
    content_hash: str

    @property
    def features(self) -> list[str]:
        return [c for c in self.train.columns if c != self.target]


def labelled_frame(rows: Iterable[Mapping[str, Any]], features: list[str], target: str) -> pd.DataFrame:
    """Labelled traffic as a frame of ``features`` + ``target``, oldest first. Rows missing a
    feature or the label are dropped (a PII field hashed away, a row logged before a new feature)."""
    records = []
    for row in sorted(rows, key=lambda r: str(r.get("timestamp") or "")):
        inputs = _json(row.get("inputs"))
        label = _json(row.get("label"))
        if not isinstance(inputs, dict) or label is None or any(f not in inputs for f in features):
            continue
        if isinstance(label, list) and len(label) == 1:
            label = label[0]
        records.append({**{f: inputs[f] for f in features}, target: label})
    return pd.DataFrame.from_records(records, columns=[*features, target])


PII_HASH_PREFIX = "sha256:"
"""How the gateway logs a PII input (``sha256:<hmac>``): joinable, not readable, not a feature."""


def without_hashed_pii(
    rows: Iterable[Mapping[str, Any]], pii: Collection[str]
) -> tuple[list[Mapping[str, Any]], int]:
    """The labelled rows whose PII inputs are not the gateway's hashes, and how many were dropped.
    A hash is neither trained on nor copied into a dataset version."""
    kept: list[Mapping[str, Any]] = []
    dropped = 0
    for row in rows:
        inputs = _json(row.get("inputs")) if pii else None
        if isinstance(inputs, dict) and any(
            isinstance(inputs.get(f), str) and inputs[f].startswith(PII_HASH_PREFIX) for f in pii
        ):
            dropped += 1
        else:
            kept.append(row)
    return kept, dropped


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the frame as CSV (columns in order, no index): stable across processes."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def assemble(
    base: pd.DataFrame, traffic: pd.DataFrame, *, target: str, holdout_fraction: float, seed: int = 0
) -> Assembled:
    """Training data = base + older traffic; holdout = the newest ``holdout_fraction`` of traffic.

    With too little traffic to hold out (fewer than 10 rows), the holdout is a random share of
    the whole, so the gate still compares both models on the same unseen rows."""
    if target not in base.columns:
        raise ValueError(f"the training data has no target column {target!r}")
    features = [c for c in base.columns if c != target]
    traffic = traffic.reindex(columns=[*features, target])
    n_hold = round(len(traffic) * holdout_fraction)
    if n_hold >= 10:
        holdout = traffic.iloc[len(traffic) - n_hold :]
        train = pd.concat([base, traffic.iloc[: len(traffic) - n_hold]], ignore_index=True)
    else:
        everything = pd.concat([base, traffic], ignore_index=True)
        holdout = everything.sample(frac=holdout_fraction, random_state=seed)
        train = everything.drop(index=holdout.index)
    train = train.reset_index(drop=True)
    holdout = holdout.reset_index(drop=True)
    whole = pd.concat([train, holdout], ignore_index=True)
    return Assembled(
        train=train,
        holdout=holdout,
        target=target,
        base_rows=len(base),
        traffic_rows=len(traffic),
        content_hash=content_hash(whole),
    )
