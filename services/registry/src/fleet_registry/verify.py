"""Check that every artifact the registry points at is there and is what it was registered as.

Run after restoring a backup (database and artifact store are backed up separately, so a restore
can pair a database with an older or newer bucket), after moving a bucket, or on a schedule:

    python -m fleet_registry verify [--json]

Model artifacts and dataset files are content-addressed: each version records the SHA-256 and size
of its object, so a missing, truncated or replaced object is caught. Exit code 0 when everything
matches, 1 otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from fleet_core.artifacts import ArtifactStore, artifact_store
from fleet_core.db import Database
from fleet_core.errors import FleetError
from fleet_registry.models import DatasetRow, DatasetVersionRow, ModelRow, VersionRow
from fleet_registry.settings import RegistrySettings


@dataclass(frozen=True)
class Problem:
    kind: str  # "model" or "dataset"
    name: str
    version: int
    uri: str
    reason: str


@dataclass
class Report:
    model_versions: int = 0
    dataset_versions: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


async def verify_artifacts(settings: RegistrySettings) -> Report:
    db = Database(settings.resolved_database_url("registry"))
    store = artifact_store(settings.resolved_artifact_uri(), settings)
    report = Report()
    try:
        async with db.transaction() as s:
            versions = (
                await s.execute(
                    select(
                        ModelRow.name,
                        VersionRow.version,
                        VersionRow.artifact_uri,
                        VersionRow.sha256,
                        VersionRow.size_bytes,
                    )
                    .join(ModelRow, ModelRow.id == VersionRow.model_id)
                    .order_by(ModelRow.name, VersionRow.version)
                )
            ).all()
            datasets = (
                await s.execute(
                    select(
                        DatasetRow.name,
                        DatasetVersionRow.version,
                        DatasetVersionRow.uri,
                        DatasetVersionRow.size_bytes,
                        DatasetVersionRow.content_hash,
                    )
                    .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
                    .where(DatasetVersionRow.uri.is_not(None))
                    .order_by(DatasetRow.name, DatasetVersionRow.version)
                )
            ).all()
    finally:
        await db.dispose()

    for name, version, uri, sha256, size in versions:
        report.model_versions += 1
        reason = await _check(store, uri, size, sha256)
        if reason:
            report.problems.append(Problem("model", name, version, uri, reason))
    for name, version, uri, size, sha256 in datasets:
        report.dataset_versions += 1
        reason = await _check(store, uri, size, sha256)
        if reason:
            report.problems.append(Problem("dataset", name, version, uri, reason))
    return report


async def _check(store: ArtifactStore, uri: str, size: int | None, sha256: str | None) -> str | None:
    try:
        data = await store.get(uri)
    except FleetError as exc:
        return f"missing: {exc}"
    if size is not None and len(data) != size:
        return f"size {len(data)} bytes, registered as {size}"
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return f"sha256 {hashlib.sha256(data).hexdigest()}, registered as {sha256}"
    return None
