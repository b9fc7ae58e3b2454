"""Request and response bodies of the deployer API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, create_model

from fleet_core.events import BatchSettings, RolloutRequested, RouteTable, TrafficArm
from fleet_core.schemas import Contract, ResourceQuota
from fleet_core.serving import ModelRoute
from fleet_deployer.entities import DeploymentView, Rollout
from fleet_deployer.routing import ArmRequest
from fleet_deployer.serving_control import AppView

# The registry's name rule and a version the databases can store: anything else is a 422 naming the
# field before it reaches a query (an unpaired surrogate or a 70-bit integer was a 500).
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
MAX_VERSION = 2**31 - 1
MAX_INTERVAL_S = 7 * 86400.0
ModelName = Annotated[
    str, Field(pattern=MODEL_NAME_PATTERN, max_length=100, description="lowercase, digits, . _ -")
]
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it holds an unpaired surrogate)") from exc
    return text


Reason = Annotated[str, Field(max_length=2000), AfterValidator(_encodable)]
"""Free text that can be stored and encoded as UTF-8."""


class BoundedArm(ArmRequest):
    """An arm whose version is a storable version number."""

    version: VersionNumber


class BoundedTrafficArm(TrafficArm):
    version: VersionNumber


class RouteTableUpdate(Contract):
    """An explicit route table: weighted primary arms summing to 100, shadow arms, one sticky flag."""

    arms: Annotated[list[BoundedArm], Field(min_length=1, max_length=100)]
    expected_revision: int | None = Field(
        default=None, ge=0, le=2**62, description="Refuse (409) unless the current table is at this revision"
    )


class BatchingUpdate(BatchSettings):
    """A model's batch settings; a field left out takes the gateways' default."""

    expected_revision: int | None = Field(
        default=None, ge=0, le=2**62, description="Refuse (409) unless the current table is at this revision"
    )

    def settings(self) -> BatchSettings:
        return BatchSettings.model_validate(self.model_dump(exclude={"expected_revision"}))


class DeploymentCreate(Contract):
    """Deploy a version and route all traffic to it."""

    model: ModelName
    version: VersionNumber | None = Field(
        default=None, description="Default: the latest version the deployer knows"
    )
    quota: ResourceQuota | None = Field(
        default=None, description="A dedicated deployment with these resources; none = the shared pool"
    )


class DeploymentCreated(BaseModel):
    """The direct rollout a deploy ran, and the model's routes after it."""

    rollout: Rollout
    route: ModelRoute


class DeploymentDetail(DeploymentView):
    """A deployment with Ray Serve's view of the application that hosts it."""

    ray: AppView | None = Field(
        default=None,
        description="Status, replicas, autoscaling bounds, actor options and the resources Ray "
        "reserved per replica (null when Ray is not connected or the application does not exist)",
    )


class ModelDeployments(BaseModel):
    """One model's deployed versions with Ray's view of each, and its route table."""

    model: str
    team: str
    route: RouteTable
    deployments: list[DeploymentDetail]


_fields: dict[str, Any] = {
    name: (info.annotation, info)
    for name, info in RolloutRequested.model_fields.items()
    if name != "requested_by"
}
# The event contract accepts what other systems send; the REST body is bounded (same names, so the
# OpenAPI document and the problem+json fields stay those of RolloutRequested).
_fields["model"] = (ModelName, Field())
_fields["version"] = (VersionNumber, Field())
_fields["step_interval_s"] = (
    Annotated[float, Field(gt=0, le=MAX_INTERVAL_S)],
    Field(default=RolloutRequested.model_fields["step_interval_s"].default),
)
_fields["duration_s"] = (Annotated[float, Field(gt=0, le=MAX_INTERVAL_S)] | None, Field(default=None))
_fields["arms"] = (
    Annotated[list[BoundedTrafficArm], Field(max_length=100)] | None,
    Field(default=None, description="A/B split; None = 50/50"),
)
_fields["reason"] = (Reason | None, Field(default=None))
RolloutCreate = create_model(  # type: ignore[call-overload]
    "RolloutCreate",
    __base__=Contract,
    __doc__="A rollout request (RolloutRequested without requested_by, which comes from the token).",
    **_fields,
)


class RollbackRequest(Contract):
    reason: Reason | None = None


class RolloutPage(BaseModel):
    """One page of rollouts and how many match in all."""

    items: list[Rollout]
    total: int
    limit: int
    offset: int


class DeploymentPage(BaseModel):
    """One page of deployments and how many match in all."""

    items: list[DeploymentView]
    total: int
    limit: int
    offset: int
