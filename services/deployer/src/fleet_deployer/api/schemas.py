"""Request and response bodies of the deployer API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

from fleet_core.events import RolloutRequested, RouteTable
from fleet_core.schemas import Contract, ResourceQuota
from fleet_core.serving import ModelRoute
from fleet_deployer.entities import DeploymentView, Rollout
from fleet_deployer.routing import ArmRequest
from fleet_deployer.serving_control import AppView


class RouteTableUpdate(Contract):
    """An explicit route table: weighted primary arms summing to 100, shadow arms, one sticky flag."""

    arms: Annotated[list[ArmRequest], Field(min_length=1)]
    expected_revision: int | None = Field(
        default=None, description="Refuse (409) unless the current table is at this revision"
    )


class DeploymentCreate(Contract):
    """Deploy a version and route all traffic to it."""

    model: Annotated[str, Field(min_length=1, max_length=100)]
    version: int | None = Field(default=None, description="Default: the latest version the deployer knows")
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
RolloutCreate = create_model(  # type: ignore[call-overload]
    "RolloutCreate",
    __base__=Contract,
    __doc__="A rollout request (RolloutRequested without requested_by, which comes from the token).",
    **_fields,
)


class RollbackRequest(Contract):
    reason: str | None = Field(default=None, max_length=2000)


class RolloutPage(BaseModel):
    items: list[Rollout]
    total: int
