"""``POST /v1/feedback``: ground truth for an earlier request, published as ``inference.feedback``.

Feedback labels only what the model served: the request id must be one a gateway answered for that
model, proven by the answer's receipt (``FeedbackReceipts``, any instance) or remembered by this
process within the feedback window (``ServedRequests``), the caller must belong to the model's
team, there is one label per row of that request, and the event's ``source`` is the caller's
token subject (a body cannot name someone else as the labeller).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fleet_gateway.api.deps import MODEL_NAME_PATTERN, CallerDep, FeedbackDep, PlaneDep
from fleet_gateway.events import feedback_now

router = APIRouter(prefix="/v1", tags=["feedback"])

MAX_LABEL_CHARS = 256
MAX_LABEL_ITEMS = 1_000
MAX_VERSION = 2**31 - 1
# 64-bit: what every consumer of the event (Kafka JSON, Parquet, SQL) stores without overflow.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _not_an_int(value: Any) -> Any:
    # An integer too large for Int64 is refused, not silently rounded to a float.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("integer outside the 64-bit range")
    return value


Float = Annotated[float, BeforeValidator(_not_an_int), Field(allow_inf_nan=False)]
Scalar = Annotated[str, Field(max_length=MAX_LABEL_CHARS)] | Int64 | Float | bool | None
Label = Scalar | Annotated[list[Scalar], Field(max_length=MAX_LABEL_ITEMS)]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="The `request_id` (X-Request-ID) of a prediction this gateway answered",
        ),
    ]
    model: Annotated[str, Field(min_length=1, max_length=100, pattern=MODEL_NAME_PATTERN)]
    labels: Annotated[
        list[Label],
        Field(
            min_length=1,
            description="One label per row of that request: a scalar, or a list of at most "
            f"{MAX_LABEL_ITEMS} scalars",
        ),
    ]
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)] | None = None
    receipt: Annotated[
        str | None,
        Field(
            max_length=200,
            description="The answer's X-Fleet-Feedback-Receipt: accepted by any gateway instance, "
            "after restarts too; without it only the answering instance's recent memory counts",
        ),
    ] = None


class FeedbackAccepted(BaseModel):
    event_id: str
    request_id: str


@router.post(
    "/feedback",
    status_code=202,
    summary="Record labels for a request this gateway answered (503 when the broker cannot take them: retry)",
    description="Any role of the model's team. 404 (`request_id`) for a request the model did not "
    "answer on this gateway within the feedback window; 422 (`labels`) unless there is one label per "
    "row; the recorded `source` is the token's subject.",
)
async def post_feedback(
    body: FeedbackRequest, caller: CallerDep, plane: PlaneDep, publisher: FeedbackDep
) -> FeedbackAccepted:
    served = await plane.feedback_target(
        caller,
        body.model,
        body.request_id,
        labels=len(body.labels),
        version=body.version,
        receipt=body.receipt,
    )
    event_id = await publisher.publish(
        feedback_now(
            request_id=body.request_id,
            model=body.model,
            labels=body.labels,
            version=served.version,
            source=caller.subject,
        )
    )
    return FeedbackAccepted(event_id=event_id, request_id=body.request_id)
