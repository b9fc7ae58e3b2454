"""Request bodies of the registry API. Unknown fields are rejected and named."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from fleet_core.auth import Role
from fleet_core.schemas import (
    DeployPolicy,
    Flavor,
    Origin,
    Recipe,
    ReferenceProfile,
    ResourceQuota,
    Signature,
    Task,
)

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$", description="lowercase, digits, . _ -")]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
AliasName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCreate(Strict):
    name: Name
    team: Name
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class ModelUpdate(Strict):
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)


class DatasetVersionKey(Strict):
    dataset: Name
    version: Annotated[int, Field(ge=1)]


class VersionMetadata(Strict):
    """Everything about a version except its bytes; frozen once registered."""

    flavor: Flavor
    signature: Signature
    task: Task = "other"
    version: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Explicit version number; default is the next one"
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dataset_version: DatasetVersionKey | None = None
    recipe: Recipe | None = None
    reference_profile: ReferenceProfile | None = None
    deploy_policy: DeployPolicy = "none"
    quota: ResourceQuota | None = None
    image: str | None = Field(default=None, max_length=500)
    example_input: list[dict[str, Any]] | None = Field(default=None, max_length=100)
    origin: Origin = "manual"
    parent_version: Annotated[int, Field(ge=1)] | None = None
    trigger_event_id: str | None = Field(default=None, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    description: str | None = Field(default=None, max_length=10_000)
    aliases: list[AliasName] = Field(default_factory=list, max_length=10)
    sha256: Sha256 | None = Field(default=None, description="If given, the uploaded bytes must hash to it")


class VersionFromUri(VersionMetadata):
    """Register an artifact that already sits in the artifact store."""

    artifact_uri: Annotated[str, Field(min_length=1, max_length=2000)]
    sha256: Sha256  # type: ignore[assignment]


FROZEN_VERSION_FIELDS = set(VersionFromUri.model_fields) - {"tags", "description", "aliases"}


class VersionUpdate(Strict):
    """Only these move on a registered version; everything else is frozen."""

    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _frozen(cls, data: Any) -> Any:
        if isinstance(data, dict):
            frozen = sorted(set(data) & FROZEN_VERSION_FIELDS)
            if frozen:
                # A ValidationError (not a ValueError) keeps each error at its field's location,
                # so the problem+json names `sha256`, not the body as a whole.
                raise ValidationError.from_exception_data(
                    cls.__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "frozen_field",
                                "is frozen: a registered version is immutable; only description, tags "
                                "and aliases may change (register a new version instead)",
                            ),
                            loc=(field,),
                            input=data[field],
                        )
                        for field in frozen
                    ],
                )
        return data


class AliasSet(Strict):
    version: Annotated[int, Field(ge=1)]


class DatasetCreate(Strict):
    name: Name
    team: Name
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class DatasetVersionMetadata(Strict):
    row_count: Annotated[int, Field(ge=0)]
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    format: str | None = Field(default=None, max_length=20, description="parquet, csv, ...")
    parent_version: Annotated[int, Field(ge=1)] | None = None
    description: str | None = Field(default=None, max_length=10_000)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatasetVersionFromUri(DatasetVersionMetadata):
    uri: Annotated[str, Field(min_length=1, max_length=2000)]
    content_hash: Sha256


class RevokedToken(BaseModel):
    token_id: str


class RevokedTokens(BaseModel):
    """Revoked, unexpired token ids: every service's verifier refuses them."""

    items: list[RevokedToken]


class TokenRequest(Strict):
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    teams: list[Annotated[str, Field(pattern=r"^(\*|[a-z0-9][a-z0-9._-]{0,99})$")]] = Field(
        default_factory=list, description="Teams this token may act on; '*' for all"
    )
    scopes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list)
    ttl_days: Annotated[float, Field(gt=0, le=3650)] | None = Field(
        default=30, description="Lifetime in days; null for a token that never expires"
    )


class TokenResponse(BaseModel):
    token: str
    token_id: str
    subject: str
    role: Role
    teams: list[str]
    expires_at: str | None
