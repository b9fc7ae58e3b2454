"""``POST /v1/feedback``: ground truth for an earlier request, published as ``inference.feedback``;
``POST /v1/outcomes``: a business KPI value for a request or a routing key (``outcome.recorded``).

Feedback labels only what the model served: the request id must be one a gateway answered for that
model, proven by the answer's receipt (``FeedbackReceipts``, any instance) or remembered by this
process within the feedback window (``ServedRequests``), the caller must belong to the model's
team, there is one label per row of that request, and the event's ``source`` is the caller's
token subject (a body cannot name someone else as the labeller).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fleet_core.errors import InvalidInput
from fleet_core.events import KPI_NAME_PATTERN, OutcomeRecorded
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


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=100, pattern=MODEL_NAME_PATTERN)]
    kpi: Annotated[
        str,
        Field(pattern=KPI_NAME_PATTERN, description="The KPI's name: conversion, revenue, ... (a-z, 0-9, _)"),
    ]
    value: Annotated[
        float,
        Field(
            allow_inf_nan=False,
            ge=-1e15,
            le=1e15,
            description="The outcome: 1/0 for a conversion, an amount, any number",
        ),
    ]
    request_id: Annotated[
        str | None, Field(min_length=1, max_length=128, description="The request the outcome follows from")
    ] = None
    routing_key: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=256,
            description="Or the routing key (a user) the request was routed by: an A/B test joins it to "
            "the arm that key was assigned to",
        ),
    ] = None
    receipt: Annotated[
        str | None,
        Field(max_length=200, description="The answer's X-Fleet-Feedback-Receipt (with request_id)"),
    ] = None


class OutcomeAccepted(BaseModel):
    event_id: str


@router.post(
    "/outcomes",
    status_code=202,
    summary="Record a business outcome (a KPI value) for a served request or a routing key",
    description="Any role of the model's team. Exactly one of `request_id` (a request this gateway "
    "answered, as for feedback: 404 otherwise) or `routing_key`. Published as `outcome.recorded`; the "
    "monitor joins it to the arm that served, and an A/B rollout started with `kpi` set to this name is "
    "decided on it. 503 when the broker cannot take it: retry.",
)
async def post_outcome(
    body: OutcomeRequest, caller: CallerDep, plane: PlaneDep, publisher: FeedbackDep
) -> OutcomeAccepted:
    if (body.request_id is None) == (body.routing_key is None):
        raise InvalidInput("name exactly one of request_id or routing_key", field="request_id")
    version = None
    if body.request_id is not None:
        served = await plane.served_target(
            caller, body.model, body.request_id, version=None, receipt=body.receipt
        )
        version = served.version
    else:
        await plane.authorise(caller, body.model)
    event_id = await publisher.publish(
        OutcomeRecorded(
            model=body.model,
            kpi=body.kpi,
            value=body.value,
            request_id=body.request_id,
            # Hashed as inference.logged hashes it (a routing key is often a user id): they join.
            routing_key=plane.logs.hasher.hash(body.routing_key) if body.routing_key else None,
            version=version,
            source=caller.subject,
            timestamp=datetime.now(UTC),
        )
    )
    return OutcomeAccepted(event_id=event_id)
