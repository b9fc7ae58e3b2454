"""Receiving artifacts: streaming uploads under a size limit, checking flavors, verifying hashes."""

from __future__ import annotations

import io
import zipfile
from typing import Literal

from fastapi import UploadFile

from fleet_core.artifacts import CHUNK, ArtifactStore, SpooledUpload, StoredArtifact
from fleet_core.errors import InvalidInput, NotFound
from fleet_core.schemas import Flavor

FILENAMES: dict[str, str] = {"sklearn": "model.skops", "onnx": "model.onnx", "python": "model.zip"}


async def receive(upload: UploadFile, max_bytes: int) -> SpooledUpload:
    """Copy an upload into a spooled file, hashing it and enforcing ``max_bytes`` (413)."""
    spooled = SpooledUpload(max_bytes)
    while chunk := await upload.read(CHUNK):
        spooled.write(chunk)
    if spooled.size == 0:
        spooled.close()
        raise InvalidInput("the artifact is empty", field="artifact")
    return spooled


def check_flavor(flavor: Flavor, data: bytes) -> list[str]:
    """Reject bytes that cannot be the flavor's format; for sklearn, the types skops would not
    trust by default (the serving side must allow them explicitly)."""
    if flavor == "sklearn":
        import skops.io as sio

        try:
            return sorted(sio.get_untrusted_types(data=data))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise InvalidInput(
                "an sklearn artifact must be a skops file (skops.io.dumps); raw pickles are refused",
                field="artifact",
            ) from exc
    if flavor == "python" and not zipfile.is_zipfile(io.BytesIO(data)):
        raise InvalidInput("a python artifact must be a zip archive of the model package", field="artifact")
    if flavor == "onnx" and (len(data) < 16 or data[:1] != b"\x08"):
        # An ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
        raise InvalidInput("the artifact is not an ONNX model", field="artifact")
    return []


OwnerKind = Literal["model", "dataset", "team"]
_OWNED_PREFIXES: dict[str, OwnerKind] = {"models": "model", "datasets": "dataset", "teams": "team"}


def owner_of(store: ArtifactStore, uri: str, field: str) -> tuple[OwnerKind, str] | None:
    """Who an object in the store belongs to, by its key: ``models/<model>/...`` to that model's
    team, ``datasets/<dataset>/...`` to that dataset's team, ``teams/<team>/...`` (the staging area
    for a team's pipelines) to that team; None for any other key (admins only)."""
    try:
        parts = store.relative_key(uri).split("/")
    except NotFound as exc:
        raise InvalidInput(f"{uri} is not in the artifact store", field=field) from exc
    if len(parts) >= 3 and parts[0] in _OWNED_PREFIXES and parts[1]:
        return _OWNED_PREFIXES[parts[0]], parts[1]
    return None


async def verify_existing(
    store: ArtifactStore, uri: str, claimed_sha256: str, max_bytes: int
) -> tuple[StoredArtifact, bytes]:
    """Hash an artifact already in the store and compare it with the client's claim."""
    try:
        data = await store.get(uri)
    except NotFound as exc:
        raise InvalidInput(f"no artifact at {uri}", field="artifact_uri") from exc
    spooled = SpooledUpload(max_bytes)
    spooled.write(data)
    if spooled.sha256 != claimed_sha256:
        # Never echo the object's hash: the response would be a hash oracle for any URI.
        raise InvalidInput(
            f"sha256 mismatch: the artifact at {uri} does not hash to {claimed_sha256}", field="sha256"
        )
    spooled.close()
    return StoredArtifact(uri=uri, sha256=claimed_sha256, size_bytes=len(data)), data
