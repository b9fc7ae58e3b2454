"""Response models of the monitor API (the dashboard reads exactly these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from fleet_core.events import FeatureDrift, RetrainCompleted, RolloutAnalysis
from fleet_monitor.entities import Alert


class ArmView(BaseModel):
    version: int
    weight: float
    mode: str


class RolloutView(BaseModel):
    rollout_id: str
    version: int
    strategy: str
    phase: str
    step: int
    reason: str | None = None


class LiveStats(BaseModel):
    """One series over the sliding window."""

    requests: int
    rps: float
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class ModelSummary(BaseModel):
    """One row of the fleet overview."""

    name: str
    team: str | None
    task: str | None
    latest_version: int | None
    arms: list[ArmView]
    rollout: RolloutView | None
    state: str = Field(description="'serving', 'idle' (no request for a while) or 'not deployed'")
    last_request_at: datetime | None
    live: LiveStats
    drifting: list[str] = Field(description="Drift kinds with an open episode, e.g. ['data']")
    drift_score: float | None = Field(
        default=None,
        description="Largest PSI in the latest data and prediction drift windows of the model's "
        "versions (0.1 is a moderate shift, 0.2 a large one); None before any window was scored",
    )
    alerts_firing: int


class Overview(BaseModel):
    """One page of the fleet overview; the totals count every model the caller may see."""

    generated_at: datetime
    window_s: float
    models: list[ModelSummary] = Field(description="This page of the models matching the filters")
    total: int = Field(description="Models matching the filters (all pages)")
    total_models: int = Field(description="Models the caller may see, before filters")
    limit: int
    offset: int
    sort: str
    order: str
    teams: list[str] = Field(description="Teams of the models the caller may see (for a team filter)")
    alerts_firing: int = Field(description="Alerts firing on the models the caller may see")
    events_ingested: int


class VersionView(BaseModel):
    version: int
    origin: str
    parent_version: int | None
    dataset: str | None
    registered_metrics: dict[str, float]
    weight: float | None = Field(description="Share of primary traffic; None when not in the route table")
    mode: str | None
    live: LiveStats
    performance: dict[str, float]
    trigger_event_id: str | None
    gate: str | None = Field(
        default=None,
        description="A gated version's delivery state (version.checked); None: not gated or unseen",
    )
    gate_reason: str | None = None


class SeriesPoint(BaseModel):
    t: float = Field(description="Bucket start, seconds since the epoch")
    requests: int
    rps: float
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class SeriesView(BaseModel):
    version: int
    arm: str
    points: list[SeriesPoint]


class DriftView(BaseModel):
    version: int
    kind: str
    active: bool = Field(description="An episode is open")
    drifted: bool = Field(description="The latest window drifted")
    window_end: datetime
    sample_size: int
    scores: list[FeatureDrift]


class ModelDetail(BaseModel):
    name: str
    team: str | None
    task: str | None
    state: str
    versions: list[VersionView]
    rollout: RolloutView | None
    analysis: list[RolloutAnalysis]
    series: list[SeriesView]
    drift: list[DriftView]
    alerts: list[Alert]
    retraining: list[RetrainCompleted] = Field(
        default_factory=list, description="Recent retraining outcomes (retrain.completed), newest first"
    )
    bucket_s: float


class LakeSummary(BaseModel):
    model: str
    partitions: dict[str, list[str]] = Field(description="Days with data, per table")
    buffered_rows: int
    rows_written: int
    rows_dropped: int


class ConfigView(BaseModel):
    model: str
    overrides: dict[str, Any]
    effective: dict[str, Any]
