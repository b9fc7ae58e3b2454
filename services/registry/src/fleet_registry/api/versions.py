"""/v1/models/{name}/versions: register (upload or existing URI), list, show, update, lineage, download."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from fleet_core.errors import InvalidInput
from fleet_registry.api.deps import (
    ArtifactsDep,
    CurrentPrincipal,
    DeliveryDep,
    Limit,
    Offset,
    SettingsDep,
    StoreDep,
)
from fleet_registry.api.forms import parse_json_part
from fleet_registry.api.schemas import VersionFromUri, VersionMetadata, VersionUpdate
from fleet_registry.artifacts import FILENAMES, check_flavor, owner_of, receive, verify_existing
from fleet_registry.delivery import CheckReport, ReviewCreate, VersionDelivery
from fleet_registry.entities import Lineage, ModelVersion, ModelVersionSummary, Page

router = APIRouter(prefix="/v1/models/{name}/versions", tags=["versions"])

REGISTRATION_HEADER = "X-Fleet-Registration"
"""``created`` (201) or ``existing`` (200: the model already held these bytes; nothing changed)."""
SAME_BYTES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The model already holds these bytes: that version is returned, nothing is "
        "registered, no event is published (header `X-Fleet-Registration: existing`)",
    },
    409: {
        "description": "The version number is taken, or the model holds these bytes with another "
        "flavor, signature or lineage",
    },
}


def _answer(response: Response, registered: tuple[ModelVersion, bool]) -> ModelVersion:
    version, created = registered
    response.headers[REGISTRATION_HEADER] = "created" if created else "existing"
    if not created:
        response.status_code = status.HTTP_200_OK
    return version


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a version by uploading its artifact",
    description="Multipart form: `metadata` (JSON, see VersionMetadata) and `artifact` (the file). "
    "The sha256 is computed on the way in; the version is frozen once registered and "
    "`model.registered` is published through the outbox. Idempotent: bytes the model already holds "
    "(same sha256; with an explicit `version`, that version's) return the existing version with "
    "200; an explicit unused `version` registers them again.",
    responses=SAME_BYTES,
)
async def upload_version(
    name: str,
    response: Response,
    metadata: Annotated[str, Form(description="VersionMetadata as JSON")],
    artifact: Annotated[UploadFile, File(description="The model artifact")],
    store: StoreDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
) -> ModelVersion:
    meta = parse_json_part(VersionMetadata, metadata, "metadata")
    await store.check_can_register(who, name, meta)
    spooled = await receive(artifact, settings.max_artifact_bytes)
    try:
        if meta.sha256 and meta.sha256 != spooled.sha256:
            raise InvalidInput(
                f"sha256 mismatch: the upload hashes to {spooled.sha256}, not {meta.sha256}", field="sha256"
            )
        untrusted = check_flavor(meta.flavor, spooled.read_all())
        stored = await artifacts.put_content_addressed(f"models/{name}", FILENAMES[meta.flavor], spooled)
    finally:
        spooled.close()
    return _answer(response, await store.create_version(who, name, meta, stored, untrusted_types=untrusted))


@router.post(
    "/from-uri",
    status_code=status.HTTP_201_CREATED,
    summary="Register a version whose artifact is already in the artifact store",
    description="The artifact is read and hashed; a sha256 that does not match is refused (422). "
    "Bytes the model already holds return the existing version with 200, as for an upload.",
    responses=SAME_BYTES,
)
async def register_from_uri(
    name: str,
    response: Response,
    body: VersionFromUri,
    store: StoreDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
) -> ModelVersion:
    team = await store.check_can_register(who, name, body)
    await store.check_object_owner(
        who, team, owner_of(artifacts, body.artifact_uri, "artifact_uri"), field="artifact_uri"
    )
    stored, data = await verify_existing(
        artifacts, body.artifact_uri, body.sha256, settings.max_artifact_bytes
    )
    untrusted = check_flavor(body.flavor, data)
    return _answer(response, await store.create_version(who, name, body, stored, untrusted_types=untrusted))


@router.get("", summary="List a model's versions, newest first")
async def list_versions(
    name: str, store: StoreDep, who: CurrentPrincipal, limit: Limit = 50, offset: Offset = 0
) -> Page[ModelVersionSummary]:
    return await store.list_versions(who, name, limit=limit, offset=offset)


@router.get("/{version}", summary="Show a version with its signature, metrics and reference profile")
async def get_version(name: str, version: int, store: StoreDep, who: CurrentPrincipal) -> ModelVersion:
    return await store.get_version(who, name, version)


@router.patch("/{version}", summary="Update a version's description or tags (everything else is frozen)")
async def update_version(
    name: str, version: int, body: VersionUpdate, store: StoreDep, who: CurrentPrincipal
) -> ModelVersion:
    return await store.update_version(who, name, version, body)


@router.get("/{version}/lineage", summary="Dataset version, parent version, trigger and children")
async def lineage(name: str, version: int, store: StoreDep, who: CurrentPrincipal) -> Lineage:
    return await store.lineage(who, name, version)


@router.get("/{version}/artifact", summary="Download the artifact", response_class=StreamingResponse)
async def download(
    name: str, version: int, store: StoreDep, artifacts: ArtifactsDep, who: CurrentPrincipal
) -> StreamingResponse:
    v = await store.get_version(who, name, version)
    return StreamingResponse(
        artifacts.stream(v.artifact_uri),
        media_type="application/octet-stream",
        headers={
            "X-Fleet-Sha256": v.sha256,
            "Content-Disposition": f'attachment; filename="{name}-{version}-{FILENAMES[v.flavor]}"',
        },
    )


@router.get(
    "/{version}/checks",
    summary="Where a version stands in its model's delivery gate: checks, reviews, state",
    description="`state` (for `deploy_policy=gated`): `checking`, `failed` (a check failed: "
    "`reason` says which and why), `rejected`, `awaiting_approval` or `ready` (the deployer "
    "canaries it). None for other policies.",
)
async def version_checks(
    name: str, version: int, delivery: DeliveryDep, who: CurrentPrincipal
) -> VersionDelivery:
    return await delivery.status(who, name, version)


@router.put(
    "/{version}/checks",
    summary="Record a version's checks (the checker's token: scope `delivery:checks`)",
    description="Replaces the checks recorded before; publishes `version.checked` for a gated version.",
)
async def record_checks(
    name: str, version: int, body: CheckReport, delivery: DeliveryDep, who: CurrentPrincipal
) -> VersionDelivery:
    return await delivery.record_checks(who, name, version, body)


@router.post(
    "/{version}/reviews",
    status_code=status.HTTP_201_CREATED,
    summary="Approve, reject or comment on a version",
    description="Approve and reject need the gate's `approver_role` on the model's team and may not "
    "come from the version's registrant; a comment needs the scientist role. A decision that changes "
    "a gated version's state publishes `version.checked`.",
)
async def review_version(
    name: str, version: int, body: ReviewCreate, delivery: DeliveryDep, who: CurrentPrincipal
) -> VersionDelivery:
    return await delivery.review(who, name, version, body)
