"""Event contracts: the CloudEvents 1.0 envelope, the topic catalogue and one payload per topic.

Every service and every outside system publishes by these types. Kafka key is
the model name (``subject``) so one model's events stay ordered. The payload
for a topic is ``PAYLOADS[topic]``; ``docs/events.md`` documents each.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleet_core.log import current_request_id
from fleet_core.schemas import (
    CheckResult,
    Contract,
    DatasetRef,
    DeliveryState,
    DeployPolicy,
    Flavor,
    JsonValue,
    Origin,
    Recipe,
    ReferenceProfile,
    ResourceQuota,
    Signature,
    Task,
)

EVENT_TYPE_PREFIX = "io.modelfleet"
SCHEMA_BASE = "https://modelfleet.dev/schemas"


class Topic(StrEnum):
    """The topic catalogue (DESIGN §3). Each topic has a ``<topic>.dlq`` dead-letter twin."""

    MODEL_REGISTERED = "model.registered"
    ROLLOUT_REQUESTED = "rollout.requested"
    ROLLOUT_UPDATED = "rollout.updated"
    INFERENCE_LOGGED = "inference.logged"
    INFERENCE_FEEDBACK = "inference.feedback"
    ROLLOUT_ANALYSIS = "rollout.analysis"
    DRIFT_DETECTED = "drift.detected"
    ANOMALY_DETECTED = "anomaly.detected"
    RETRAIN_REQUESTED = "retrain.requested"
    DATASET_UPDATED = "dataset.updated"
    VERSION_CHECKED = "version.checked"
    OUTCOME_RECORDED = "outcome.recorded"
    RETRAIN_COMPLETED = "retrain.completed"
    AUDIT_RECORDED = "audit.recorded"

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.value)

    @property
    def event_type(self) -> str:
        return f"{EVENT_TYPE_PREFIX}.{self.value}.v1"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


# --------------------------------------------------------------------------- payloads

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
"""The registry's rule for model names. Names become Kafka keys, metric labels and directories of
the inference lake (``model=<name>``), so an event naming anything else (``../x``, ``a/b``, NUL,
unpaired surrogates, upper case) fails validation and goes to the dead-letter topic."""
ModelName = Annotated[
    str, Field(pattern=MODEL_NAME_PATTERN, description="A registered model's name: lowercase, digits, . _ -")
]

Strategy = Literal["direct", "canary", "blue_green", "ab", "shadow"]
ArmMode = Literal["primary", "shadow"]
RolloutPhase = Literal["pending", "progressing", "paused", "promoted", "rolled_back", "aborted", "failed"]
Verdict = Literal["pass", "fail", "inconclusive"]


class ModelRegistered(Contract):
    """A version exists and is frozen; its artifact can be fetched and verified."""

    model: ModelName
    version: int
    team: str
    flavor: Flavor
    task: Task = "other"
    artifact_uri: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: int
    signature: Signature
    metrics: dict[str, float] = Field(default_factory=dict)
    hyperparameters: dict[str, JsonValue] = Field(default_factory=dict)
    dataset_version: DatasetRef | None = None
    reference_profile: ReferenceProfile | None = None
    recipe: Recipe | None = None
    deploy_policy: DeployPolicy = "none"
    quota: ResourceQuota | None = None
    image: str | None = None
    example_input: list[dict[str, JsonValue]] | None = None
    origin: Origin = "manual"
    parent_version: int | None = None
    trigger_event_id: str | None = None
    registered_by: str


class TrafficArm(Contract):
    """One version's share of traffic in a rollout request (A/B and explicit splits)."""

    version: int
    weight: Annotated[float, Field(ge=0, le=100)]


class RolloutRequested(Contract):
    """Deploy version V of model M with strategy S."""

    model: ModelName
    version: int
    strategy: Strategy = "direct"
    steps: list[Annotated[int, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Canary traffic percentages, ending at 100",
    )
    step_interval_s: Annotated[float, Field(gt=0)] = 60.0
    arms: list[TrafficArm] | None = Field(default=None, description="A/B split; None = 50/50")
    duration_s: float | None = None
    kpi: str | None = Field(
        default=None,
        description="A/B KPI: accuracy, error_rate, mae, or a business KPI other systems post as "
        "outcome.recorded (conversion, revenue)",
    )
    quota: ResourceQuota | None = None
    requested_by: str
    reason: str | None = None


class RouteArm(Contract):
    """One version in a model's route table."""

    version: int
    weight: Annotated[float, Field(ge=0, le=100)] = Field(description="Percent of primary traffic")
    mode: ArmMode = "primary"
    sticky: bool = Field(default=False, description="Assign by hashing X-Fleet-Routing-Key")
    deployment: str | None = Field(default=None, description="Serving deployment that hosts it")


class BatchSettings(Contract):
    """How gateways gather concurrent requests to one version of a model into one model call.

    A field left out takes the gateway's default (``FLEET_BATCH_MAX_ROWS``, ``_MAX_DELAY_MS``,
    ``_MAX_INFLIGHT``); ``max_rows`` 1 turns batching off for the model."""

    max_rows: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        default=None, description="Rows per batched call at most; 1 = no batching"
    )
    max_delay_ms: Annotated[float, Field(ge=0, le=1000)] | None = Field(
        default=None, description="How long a request may wait for company while a call slot is free"
    )
    max_inflight: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Batched calls of one version running at once"
    )


class RouteTable(Contract):
    """The full route table of one model: who gets which share of traffic, and how the gateway
    batches its requests."""

    model: ModelName
    revision: int = Field(description="Increases with every change; stale tables are ignored")
    arms: list[RouteArm]
    batching: BatchSettings | None = Field(
        default=None, description="The model's batch settings; None = the gateway's defaults"
    )


class RolloutUpdated(Contract):
    """A rollout changed phase or step; carries the model's full route table."""

    rollout_id: str
    model: ModelName
    version: int
    strategy: Strategy
    phase: RolloutPhase
    step: int = 0
    routes: RouteTable
    reason: str | None = None
    kpi: str | None = Field(default=None, description="A/B KPI the monitor tests, e.g. 'accuracy'")


class InferenceLogged(Contract):
    """One served request, privacy-filtered."""

    request_id: str
    model: ModelName
    version: int
    arm: ArmMode = "primary"
    inputs: list[dict[str, JsonValue]]
    outputs: list[JsonValue] | None = None
    latency_ms: float
    status: Literal["ok", "error"]
    status_code: int = 200
    error: str | None = None
    caller: str | None = Field(default=None, description="Hashed token subject")
    routing_key: str | None = None
    timestamp: datetime


class InferenceFeedback(Contract):
    """Ground truth for an earlier request, one label per input row."""

    request_id: str
    model: ModelName
    version: int | None = None
    labels: list[JsonValue]
    source: str | None = None
    timestamp: datetime


KPI_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class OutcomeRecorded(Contract):
    """A business outcome (a conversion, revenue, any number) another system attributes to a
    served request, or to a routing key (a user) an A/B test assigns to one arm."""

    model: ModelName
    kpi: Annotated[str, Field(pattern=KPI_NAME_PATTERN, description="The KPI's name, e.g. conversion")]
    value: Annotated[float, Field(allow_inf_nan=False)]
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    routing_key: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="As inference.logged carries it: the gateway's `sha256:` hash of the raw key "
        "(POST /v1/outcomes hashes it)",
    )
    version: int | None = Field(default=None, description="The version that answered the request, when known")
    source: str | None = None
    timestamp: datetime

    @model_validator(mode="after")
    def _one_key(self) -> OutcomeRecorded:
        if (self.request_id is None) == (self.routing_key is None):
            raise ValueError("an outcome names exactly one of request_id or routing_key")
        return self


class ArmMetrics(Contract):
    """The numbers behind a verdict, for one arm."""

    requests: int
    error_rate: float
    latency_p95_ms: float | None = None
    kpi: float | None = None
    kpi_samples: int | None = Field(default=None, description="Outcomes behind a business KPI")
    kpi_low: float | None = Field(default=None, description="95 % confidence interval of a business KPI")
    kpi_high: float | None = None


class RolloutAnalysis(Contract):
    """The monitor's verdict for one rollout step."""

    rollout_id: str
    model: ModelName
    step: int
    candidate_version: int
    baseline_version: int
    verdict: Verdict
    reason: str
    candidate: ArmMetrics
    baseline: ArmMetrics
    p_value: float | None = None
    kpi: str | None = Field(default=None, description="The KPI the arms' `kpi` values measure")


class FeatureDrift(Contract):
    """One statistical test on one feature (or on the predictions)."""

    feature: str
    test: Literal["psi", "ks", "chi2", "performance"]
    statistic: float
    p_value: float | None = None
    threshold: float
    drifted: bool


class DriftDetected(Contract):
    """A drift episode began on a model version."""

    model: ModelName
    version: int
    kind: Literal["data", "prediction", "concept"]
    window_start: datetime
    window_end: datetime
    sample_size: int
    scores: list[FeatureDrift]
    drifted_features: list[str]


class AnomalyDetected(Contract):
    """A metric left its expected band (state=firing) or came back (state=resolved)."""

    model: ModelName
    version: int | None = None
    metric: Literal["latency", "error_rate", "traffic", "out_of_range_inputs", "probing"]
    state: Literal["firing", "resolved"]
    value: float
    baseline: float
    threshold: float
    severity: Literal["info", "warning", "critical"] = "warning"
    detail: str | None = None


class RetrainRequested(Contract):
    """Retrain model M, with the reason and what triggered it."""

    model: ModelName
    reason: Literal["drift", "schedule", "manual", "dataset"]
    trigger_event_id: str | None = None
    requested_by: str


class DatasetUpdated(Contract):
    """A new dataset version arrived."""

    dataset: str
    version: int
    content_hash: str
    uri: str | None = None
    row_count: int
    models: list[ModelName] = Field(default_factory=list, description="Models trained on this dataset")


class RetrainCompleted(Contract):
    """A retraining job ended: a version registered, or rejected by the gate, or failed."""

    job_id: str
    model: ModelName
    outcome: Literal["registered", "rejected", "failed"]
    champion_version: int | None = None
    new_version: int | None = None
    dataset_version: DatasetRef | None = None
    candidate_metrics: dict[str, float] = Field(default_factory=dict)
    champion_metrics: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class VersionChecked(Contract):
    """A gated version's delivery state changed: its checks came in, or a reviewer approved or
    rejected it. A notification: the deployer re-reads the state from the registry before acting."""

    model: ModelName
    version: int
    team: str
    state: DeliveryState
    reason: str
    checks: list[CheckResult] = Field(default_factory=list)
    approvals: int = 0
    approvals_required: int = 0


class AuditRecorded(Contract):
    """One write (or refused attempt) in a service, for the platform's audit log in the registry."""

    service: str
    actor: str = Field(description="The token's subject; `anonymous` without a valid token")
    role: str | None = None
    action: str = Field(description="METHOD and route template, e.g. `PUT /v1/routes/{model}`")
    resource: str = Field(description="The request path")
    outcome: Literal["ok", "denied", "rejected", "error"] = Field(
        description="ok (2xx/3xx), denied (401/403), rejected (other 4xx), error (5xx)"
    )
    status: int
    at: datetime
    request_id: str | None = None
    detail: dict[str, JsonValue] = Field(default_factory=dict)


PAYLOADS: dict[Topic, type[Contract]] = {
    Topic.MODEL_REGISTERED: ModelRegistered,
    Topic.ROLLOUT_REQUESTED: RolloutRequested,
    Topic.ROLLOUT_UPDATED: RolloutUpdated,
    Topic.INFERENCE_LOGGED: InferenceLogged,
    Topic.INFERENCE_FEEDBACK: InferenceFeedback,
    Topic.ROLLOUT_ANALYSIS: RolloutAnalysis,
    Topic.DRIFT_DETECTED: DriftDetected,
    Topic.ANOMALY_DETECTED: AnomalyDetected,
    Topic.RETRAIN_REQUESTED: RetrainRequested,
    Topic.DATASET_UPDATED: DatasetUpdated,
    Topic.RETRAIN_COMPLETED: RetrainCompleted,
    Topic.VERSION_CHECKED: VersionChecked,
    Topic.OUTCOME_RECORDED: OutcomeRecorded,
    Topic.AUDIT_RECORDED: AuditRecorded,
}

# --------------------------------------------------------------------------- envelope

P = TypeVar("P", bound=BaseModel)


AUTH_EXTENSION = "fleetauth"
"""CloudEvents extension attribute carrying a bearer token (the same JWT the REST APIs take): an
event that asks a service to act (``rollout.requested``) is authorised by it, not by its source."""


class CloudEvent(BaseModel, Generic[P]):
    """CloudEvents 1.0 structured-mode JSON envelope, with ``requestid`` and ``fleetauth`` extensions."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, Field(min_length=1)]
    type: str
    source: str
    time: datetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    requestid: str | None = None
    fleetauth: str | None = Field(default=None, repr=False, max_length=8192)
    """Bearer token of whoever asks for the action (a service's own token or its caller's)."""
    data: P

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def make_event(
    topic: Topic, data: Contract, *, source: str, subject: str | None = None, auth: str | None = None
) -> CloudEvent[Any]:
    """A new envelope for ``data`` on ``topic``; picks up the current request id. ``auth`` is a
    bearer token for the ``fleetauth`` extension (required on ``rollout.requested``)."""
    expected = PAYLOADS[topic]
    if not isinstance(data, expected):
        raise TypeError(f"{topic} carries {expected.__name__}, not {type(data).__name__}")
    return _envelope(topic)(
        id=str(uuid.uuid4()),
        type=topic.event_type,
        source=source,
        time=datetime.now(UTC),
        subject=subject if subject is not None else getattr(data, "model", None),
        dataschema=f"{SCHEMA_BASE}/{topic.value}/v1",
        requestid=current_request_id(),
        fleetauth=auth,
        data=data,
    )


class EventDecodeError(ValueError):
    """A message that is not a valid event for its topic: a poison message, never retried."""


@functools.cache
def _envelope(topic: Topic) -> type[CloudEvent[Any]]:
    """The parametrised envelope of a topic, built once: looking up ``CloudEvent[payload]`` on
    every message cost a third of decoding (bench/monitor.py)."""
    return CloudEvent[PAYLOADS[topic]]  # type: ignore[valid-type,no-any-return]


def parse_event(topic: Topic | str, raw: bytes | str | dict[str, Any]) -> CloudEvent[Any]:
    """Validate a raw message as the envelope of ``topic`` with its typed payload."""
    topic = Topic(topic)
    envelope = _envelope(topic)
    try:
        event = envelope.model_validate(raw) if isinstance(raw, dict) else envelope.model_validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid {topic.value} event: {exc}") from exc
    if event.type != topic.event_type:
        raise EventDecodeError(f"event type {event.type!r} does not belong on topic {topic.value}")
    return event
