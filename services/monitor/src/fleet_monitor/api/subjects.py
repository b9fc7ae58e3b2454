"""/v1/subjects: the right to erasure. An admin removes one data subject's rows from the lake.

The subject is named by its raw id (an email, a user id: what the gateway saw in a PII field or as
the routing key) or by the keyed hash the gateway logs instead (``sha256:<hex>``). A raw id is
hashed here with ``FLEET_PII_SALT`` and never recorded: the audit entry names the hash.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from fleet_core.audit import annotate_audit
from fleet_core.auth import BearerCredentials, Role, get_principal
from fleet_core.errors import InvalidInput, Unavailable
from fleet_core.privacy import HASHED
from fleet_monitor.api.deps import EngineDep
from fleet_monitor.api.lake import need_lake
from fleet_monitor.lake import is_model_name

router = APIRouter(prefix="/v1/subjects", tags=["privacy"])

MAX_SUBJECT_CHARS = 512


class ErasureResult(BaseModel):
    """What one erasure removed from the inference lake."""

    subject: str = Field(description="The subject's keyed hash, as the lake holds it")
    model: str | None = Field(description="The one model erased from; null for every model")
    inference_rows: int = Field(description="Served rows removed")
    feedback_rows: int = Field(description="Labels of those rows removed")
    partitions: list[str] = Field(description="Partitions rewritten, `<table>/model=<name>/date=<day>`")


def _is_text(value: str) -> bool:
    """Encodable as UTF-8 (the hash's input) and free of NUL."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


@router.delete(
    "/{subject:path}",
    summary="Erase a data subject's rows from the inference lake (right to erasure)",
    description="Removes every served row whose PII fields or routing key hold the subject (raw id, "
    "or its `sha256:<hex>` keyed hash as the gateway logs it), and the labels of those rows, from "
    "every model or only `model`; rows not yet written are erased too. Only the Parquet files that "
    "held such rows are rewritten. A raw id needs the monitor to know `FLEET_PII_SALT`; the hashed "
    "form always works. Admins only. Datasets registered in the registry (traffic-derived versions, "
    "training data) are immutable and are not touched.",
)
async def erase_subject(
    request: Request,
    engine: EngineDep,
    credentials: BearerCredentials,
    subject: str = Path(
        description="The raw id or `sha256:<64 hex>`", json_schema_extra={"maxLength": MAX_SUBJECT_CHARS}
    ),
    model: str | None = Query(default=None, description="Erase from this model only"),
) -> ErasureResult:
    # Before anything can refuse the request: the audit entry must never hold the raw id that the
    # path carries, whatever the outcome.
    valid = len(subject) <= MAX_SUBJECT_CHARS and _is_text(subject)
    hashed = subject if HASHED.fullmatch(subject) else None
    if hashed is None and engine.pii is not None and valid:
        hashed = engine.pii.hash(subject)
    annotate_audit(request.scope, resource=f"/v1/subjects/{hashed or '<redacted>'}")
    get_principal(request, credentials).require_role(Role.ADMIN)
    if not valid:
        raise InvalidInput(
            f"a subject is text of at most {MAX_SUBJECT_CHARS} characters (no NUL, valid UTF-8)",
            field="subject",
        )
    if hashed is None:
        raise InvalidInput(
            "this monitor has no FLEET_PII_SALT, so it cannot hash a raw id: pass the id's "
            "sha256:<hex> form as the gateway logs it",
            field="subject",
        )
    if model is not None and not is_model_name(model):
        raise InvalidInput(f"{model!r} is not a valid model name", field="model")
    lake = need_lake(engine.lake)
    try:
        erased = await asyncio.to_thread(lake.erase, hashed, model=model)
    except OSError as exc:
        # Each file is rewritten whole or not at all, so a retry finishes what this one began.
        raise Unavailable(f"the lake's store failed during the erasure ({exc}); retry it") from exc
    annotate_audit(
        request.scope,
        detail={
            "model": model,
            "inference_rows": erased.inference_rows,
            "feedback_rows": erased.feedback_rows,
            "partitions": len(erased.partitions),
        },
    )
    return ErasureResult(
        subject=hashed,
        model=model,
        inference_rows=erased.inference_rows,
        feedback_rows=erased.feedback_rows,
        partitions=erased.partitions,
    )
