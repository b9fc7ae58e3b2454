"""What the registry returns: plain pydantic entities, built from rows inside the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from fleet_core.schemas import (
    DatasetRef,
    DeployPolicy,
    Flavor,
    Origin,
    Recipe,
    ReferenceProfile,
    ResourceQuota,
    Signature,
    Task,
)

T = TypeVar("T")


ModelSort = Literal["name", "-name", "updated", "-updated", "created", "-created"]
"""How ``GET /v1/models`` orders its items; a leading ``-`` means descending."""


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Model(BaseModel):
    name: str
    team: str
    description: str | None
    tags: list[str]
    archived: bool
    created_at: datetime
    updated_at: datetime
    created_by: str
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict)


class ModelVersion(BaseModel):
    model: str
    version: int
    team: str
    flavor: Flavor
    task: Task
    artifact_uri: str
    sha256: str
    size_bytes: int
    signature: Signature
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    dataset_version: DatasetRef | None
    recipe: Recipe | None
    reference_profile: ReferenceProfile | None
    deploy_policy: DeployPolicy
    quota: ResourceQuota | None
    image: str | None
    example_input: list[dict[str, Any]] | None
    untrusted_types: list[str]
    origin: Origin
    parent_version: int | None
    trigger_event_id: str | None
    tags: list[str]
    description: str | None
    aliases: list[str]
    created_at: datetime
    created_by: str
    event_id: str


class ModelVersionSummary(BaseModel):
    """A version without its large fields (profile, signature) for listings."""

    model: str
    version: int
    flavor: Flavor
    task: Task
    sha256: str
    size_bytes: int
    metrics: dict[str, float]
    deploy_policy: DeployPolicy
    origin: Origin
    parent_version: int | None
    dataset_version: DatasetRef | None
    tags: list[str]
    aliases: list[str]
    created_at: datetime
    created_by: str


class Dataset(BaseModel):
    name: str
    team: str
    description: str | None
    tags: list[str]
    created_at: datetime
    created_by: str
    latest_version: int | None = None


class DatasetVersion(BaseModel):
    dataset: str
    version: int
    content_hash: str
    uri: str | None
    format: str | None
    size_bytes: int | None
    row_count: int
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    parent_version: int | None
    description: str | None
    created_at: datetime
    created_by: str

    model_config = {"populate_by_name": True}

    def ref(self) -> DatasetRef:
        return DatasetRef(
            dataset=self.dataset,
            version=self.version,
            content_hash=self.content_hash,
            uri=self.uri,
            row_count=self.row_count,
        )


class Lineage(BaseModel):
    """Where a version came from and what came from it."""

    model: str
    version: int
    origin: Origin
    created_at: datetime
    created_by: str
    trigger_event_id: str | None
    dataset_version: DatasetVersion | None
    parent: ModelVersionSummary | None
    children: list[ModelVersionSummary]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    detail: dict[str, Any]
    request_id: str | None
    outcome: str = "ok"
    service: str = "registry"


class IssuedToken(BaseModel):
    token_id: str
    subject: str
    role: str
    teams: list[str]
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime | None
    issued_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
