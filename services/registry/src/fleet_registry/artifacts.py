"""Receiving artifacts: streaming uploads under a size limit, checking flavors, verifying hashes."""

from __future__ import annotations

import io
import zipfile

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
        raise InvalidInput(
            f"sha256 mismatch: the artifact at {uri} hashes to {spooled.sha256}, not {claimed_sha256}",
            field="sha256",
        )
    spooled.close()
    return StoredArtifact(uri=uri, sha256=claimed_sha256, size_bytes=len(data)), data
