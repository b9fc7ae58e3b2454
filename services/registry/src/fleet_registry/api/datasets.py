"""/v1/datasets: datasets and their content-hashed versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from fleet_core.errors import NotFound
from fleet_registry.api.deps import (
    ArtifactsDep,
    CurrentPrincipal,
    Limit,
    Offset,
    SettingsDep,
    StoreDep,
)
from fleet_registry.api.forms import parse_json_part
from fleet_registry.api.schemas import DatasetCreate, DatasetVersionFromUri, DatasetVersionMetadata
from fleet_registry.artifacts import owner_of, receive, verify_existing
from fleet_registry.entities import Dataset, DatasetVersion, Page

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a dataset")
async def create_dataset(body: DatasetCreate, store: StoreDep, who: CurrentPrincipal) -> Dataset:
    return await store.create_dataset(who, body)


@router.get("", summary="List datasets (filter by team or name; paginated)")
async def list_datasets(
    store: StoreDep,
    who: CurrentPrincipal,
    team: Annotated[str | None, Query(max_length=100, description="Only this team's datasets")] = None,
    name: Annotated[str | None, Query(max_length=100, description="Name contains")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[Dataset]:
    return await store.list_datasets(who, team=team, name=name, limit=limit, offset=offset)


@router.get("/{name}", summary="Show a dataset")
async def get_dataset(name: str, store: StoreDep, who: CurrentPrincipal) -> Dataset:
    return await store.get_dataset(who, name)


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Add a version by uploading its file (same content = same version)",
    description="Multipart: `metadata` (JSON: row_count, schema, format, parent_version) and `file`. "
    "The content hash is the file's sha256. Uploading content that already exists returns the existing "
    "version with 200.",
    responses={200: {"description": "The content already exists; its version is returned"}},
)
async def upload_dataset_version(
    name: str,
    response: Response,
    metadata: Annotated[str, Form(description="DatasetVersionMetadata as JSON")],
    file: Annotated[UploadFile, File(description="The dataset file")],
    store: StoreDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
) -> DatasetVersion:
    meta = parse_json_part(DatasetVersionMetadata, metadata, "metadata")
    await store.check_can_add_dataset_version(who, name)
    spooled = await receive(file, settings.max_dataset_bytes)
    try:
        ext = meta.format or "bin"
        stored = await artifacts.put_content_addressed(f"datasets/{name}", f"data.{ext}", spooled)
    finally:
        spooled.close()
    version, created = await store.create_dataset_version(
        who, name, meta, content_hash=stored.sha256, uri=stored.uri, size_bytes=stored.size_bytes
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return version


@router.post(
    "/{name}/versions/from-uri",
    status_code=status.HTTP_201_CREATED,
    summary="Add a version whose file is already in the artifact store (hash verified)",
)
async def register_dataset_version(
    name: str,
    body: DatasetVersionFromUri,
    response: Response,
    store: StoreDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
) -> DatasetVersion:
    team = await store.check_can_add_dataset_version(who, name)
    await store.check_object_owner(who, team, owner_of(artifacts, body.uri, "uri"), field="uri")
    stored, _ = await verify_existing(artifacts, body.uri, body.content_hash, settings.max_dataset_bytes)
    version, created = await store.create_dataset_version(
        who, name, body, content_hash=stored.sha256, uri=stored.uri, size_bytes=stored.size_bytes
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return version


@router.get("/{name}/versions", summary="List a dataset's versions, newest first")
async def list_dataset_versions(
    name: str, store: StoreDep, who: CurrentPrincipal, limit: Limit = 50, offset: Offset = 0
) -> Page[DatasetVersion]:
    return await store.list_dataset_versions(who, name, limit=limit, offset=offset)


@router.get("/{name}/versions/{version}", summary="Show a dataset version")
async def get_dataset_version(
    name: str, version: int, store: StoreDep, who: CurrentPrincipal
) -> DatasetVersion:
    return await store.get_dataset_version(who, name, version)


@router.get(
    "/{name}/versions/{version}/content",
    summary="Download a dataset version's file",
    response_class=StreamingResponse,
)
async def download_dataset_version(
    name: str, version: int, store: StoreDep, artifacts: ArtifactsDep, who: CurrentPrincipal
) -> StreamingResponse:
    dv = await store.get_dataset_version(who, name, version)
    if dv.uri is None:
        raise NotFound(f"dataset '{name}' version {version} has no stored file", field="version")
    return StreamingResponse(
        artifacts.stream(dv.uri),
        media_type="application/octet-stream",
        headers={"X-Fleet-Content-Hash": dv.content_hash},
    )
