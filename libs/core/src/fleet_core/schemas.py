"""Domain schemas shared by every service: signatures, reference profiles, recipes, quotas.

These are contracts: they travel inside events and across HTTP APIs, so they
live here once and forbid unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet_core.recipes import check_estimator, check_training_function

Flavor = Literal["sklearn", "onnx", "python"]
DeployPolicy = Literal["none", "direct", "canary", "gated"]
"""What registering a version does: nothing, take all traffic, start a canary, or run the model's
delivery gate (checks, then approvals) and canary once it passes (docs/delivery.md)."""
Task = Literal["classification", "regression", "other"]
FieldType = Literal["float", "int", "bool", "string", "category"]
Origin = Literal["manual", "retrain"]

JsonScalar = str | int | float | bool | None
JsonValue = Any  # JSON-compatible value; pydantic validates serialisability at the boundary


class Contract(BaseModel):
    """Base for every contract model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class FieldSpec(Contract):
    """One input or output field of a model signature."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: FieldType = "float"
    shape: list[int] | None = Field(
        default=None, description="Shape of one value; None for a scalar. -1 means any length."
    )
    minimum: float | None = Field(default=None, description="Smallest allowed value (numeric fields)")
    maximum: float | None = Field(default=None, description="Largest allowed value (numeric fields)")
    categories: list[str | int] | None = Field(default=None, description="Allowed values (category fields)")
    pii: bool = Field(default=False, description="Hashed or dropped before anything is logged")
    nullable: bool = False
    description: str | None = None

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> FieldSpec:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"field {self.name!r}: minimum {self.minimum} > maximum {self.maximum}")
        if self.type == "category" and not self.categories:
            raise ValueError(f"field {self.name!r}: a category field needs its categories")
        return self


class Signature(Contract):
    """What a model takes and returns; the gateway validates requests against it."""

    inputs: Annotated[list[FieldSpec], Field(min_length=1)]
    outputs: list[FieldSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_are_unique(self) -> Signature:
        for side, fields in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [f.name for f in fields]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{side}: duplicate field names {dupes}")
        return self

    def input(self, name: str) -> FieldSpec | None:
        return next((f for f in self.inputs if f.name == name), None)


class Histogram(Contract):
    """Counts per bin; ``edges`` has one more element than ``counts``."""

    edges: list[float]
    counts: list[int]

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("histogram: len(edges) must be len(counts) + 1")
        return self


class NumericProfile(Contract):
    """Distribution of a numeric feature in the training data."""

    kind: Literal["numeric"] = "numeric"
    count: int
    missing: int = 0
    mean: float
    std: float
    minimum: float
    maximum: float
    quantiles: dict[str, float] = Field(description="Keys are quantile levels such as '0.5'")
    histogram: Histogram
    sample: list[float] = Field(
        default_factory=list, description="A bounded random sample, for two-sample tests (KS)"
    )


class CategoricalProfile(Contract):
    """Distribution of a categorical feature in the training data."""

    kind: Literal["categorical"] = "categorical"
    count: int
    missing: int = 0
    frequencies: dict[str, int]


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class ReferenceProfile(Contract):
    """The training data's distribution, stored with a version and used for drift detection."""

    row_count: int
    features: dict[str, FeatureProfile]
    prediction: FeatureProfile | None = None
    target: FeatureProfile | None = None


class Recipe(Contract):
    """How to rebuild a model from a dataset: an allow-listed scikit-learn estimator and its
    parameters, or a registered training function (``fleet_core.recipes``). The retrainer runs a
    recipe, so one that names anything else is refused wherever it is validated: at registration
    (a 422 naming ``recipe.estimator`` or ``recipe.function``), in events, in the retrainer."""

    kind: Literal["sklearn", "function"] = "sklearn"
    estimator: str | None = Field(
        default=None,
        max_length=300,
        description="The scikit-learn estimator class, e.g. sklearn.linear_model.LogisticRegression "
        "(for estimator_b64: the class of the serialised estimator)",
    )
    params: dict[str, JsonValue] = Field(default_factory=dict)
    estimator_b64: str | None = Field(
        default=None,
        description="The unfitted estimator serialised with skops (base64), for composite estimators",
    )
    function: str | None = Field(
        default=None,
        max_length=100,
        description="The registered name of a training function, for kind=function",
    )
    target: str | None = Field(default=None, description="Name of the target column")
    task: Task = "other"

    @field_validator("estimator")
    @classmethod
    def _allowed_estimator(cls, path: str | None) -> str | None:
        return None if path is None else check_estimator(path)

    @field_validator("function")
    @classmethod
    def _registered_function(cls, name: str | None) -> str | None:
        return None if name is None else check_training_function(name)

    @model_validator(mode="after")
    def _complete(self) -> Recipe:
        if self.kind == "sklearn" and not self.estimator:
            # Also with estimator_b64: the blob's class must be named (and allowed) up front.
            raise ValueError(
                "recipe: kind 'sklearn' needs 'estimator' (the class, also with 'estimator_b64')"
            )
        if self.kind == "function" and not self.function:
            raise ValueError("recipe: kind 'function' needs 'function'")
        return self


class ResourceQuota(Contract):
    """Resources of a dedicated deployment; becomes Ray actor options and autoscaling config."""

    num_cpus: Annotated[float, Field(gt=0, le=64)] = 1.0
    memory_mb: Annotated[int, Field(gt=0, le=1_048_576)] | None = None
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 0
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 2.0
    capacity_class: Literal["on_demand", "spot"] = "on_demand"

    @model_validator(mode="after")
    def _bounds(self) -> ResourceQuota:
        if self.min_replicas > self.max_replicas:
            raise ValueError("quota: min_replicas must not exceed max_replicas")
        return self


class DatasetRef(Contract):
    """Points at one dataset version."""

    dataset: str
    version: int
    content_hash: str
    uri: str | None = None
    row_count: int | None = None


# --------------------------------------------------------------------------- delivery gate

CheckName = Literal["signature", "smoke", "evaluation", "latency"]
CheckStatus = Literal["passed", "failed", "skipped"]
DeliveryState = Literal["checking", "failed", "rejected", "awaiting_approval", "ready"]
"""Where a gated version stands: its checks are not in yet; a check failed; a reviewer rejected
it; its checks passed and it waits for approvals; it may take traffic."""
ApproverRole = Literal["scientist", "deployer", "admin"]


class DeliveryGate(Contract):
    """A model's delivery gate: what a version registered with ``deploy_policy="gated"`` must pass
    before it takes traffic. Every field has a default, so a model without one is gated sensibly."""

    primary_metric: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="The metric the evaluation decides on; None: accuracy (classification) or rmse "
        "(regression)",
    )
    higher_is_better: bool | None = Field(
        default=None, description="None: known from the metric's name (error/loss metrics: lower)"
    )
    min_improvement: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="How much better than the champion the candidate must score"
    )
    holdout_dataset: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="A registered dataset both are scored on; None: labelled traffic"
    )
    holdout_version: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Its version; None: the newest"
    )
    target: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="The holdout's label column; None: the version's recipe target"
    )
    min_holdout_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 30
    latency_budget_ms: Annotated[float, Field(gt=0, le=60_000)] | None = Field(
        default=None, description="p95 of one-row predictions on a warm copy of the model; None: not checked"
    )
    approvals: Annotated[int, Field(ge=0, le=5)] = Field(
        default=0, description="Approvals needed (by people other than the registrant) before the canary"
    )
    approver_role: ApproverRole = "deployer"


class CheckResult(Contract):
    """One check's outcome on one version."""

    name: CheckName
    status: CheckStatus
    detail: Annotated[str, Field(max_length=2000)]
    measured: dict[str, float] = Field(default_factory=dict)
