"""``POST /v1/feedback``: ground truth for an earlier request, published as ``inference.feedback``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from fleet_core.auth import ALL_TEAMS
from fleet_core.errors import Forbidden, NotFound
from fleet_core.schemas import JsonValue
from fleet_gateway.api.deps import CallerDep, FeedbackDep, PlaneDep
from fleet_gateway.events import feedback_now

router = APIRouter(prefix="/v1", tags=["feedback"])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: Annotated[str, Field(min_length=1, max_length=200)]
    labels: Annotated[list[JsonValue], Field(min_length=1, description="One label per input row")]
    version: Annotated[int, Field(ge=1)] | None = None
    source: Annotated[str, Field(max_length=200)] | None = None


class FeedbackAccepted(BaseModel):
    event_id: str
    request_id: str


@router.post(
    "/feedback",
    status_code=202,
    summary="Record labels for a request (503 when the broker cannot take them: retry)",
)
async def post_feedback(
    body: FeedbackRequest, caller: CallerDep, plane: PlaneDep, publisher: FeedbackDep
) -> FeedbackAccepted:
    try:
        await plane.authorise(caller, body.model)
    except NotFound:
        # A model this gateway does not route (retired, or not deployed): its team is unknown here.
        if not (caller.is_admin or ALL_TEAMS in caller.teams):
            raise Forbidden(
                f"model '{body.model}' is not deployed; only an all-teams caller may label it"
            ) from None
    event_id = await publisher.publish(
        feedback_now(
            request_id=body.request_id,
            model=body.model,
            labels=body.labels,
            version=body.version,
            source=body.source or caller.subject,
        )
    )
    return FeedbackAccepted(event_id=event_id, request_id=body.request_id)
