"""What the retrainer's store returns: plain pydantic entities, never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Job(BaseModel):
    """A retraining job and its outcome."""

    id: str
    model: str
    team: str | None = Field(description="The model's team; None for jobs from before teams were recorded")
    trigger: str = Field(description="drift, schedule, manual or dataset")
    trigger_event_id: str | None
    requested_by: str
    state: str = Field(description="queued, running, registered, rejected or failed")
    champion_version: int | None
    source_dataset: str | None = Field(
        default=None, description="The dataset a dataset trigger named; None: the champion's training dataset"
    )
    source_dataset_version: int | None = Field(default=None, description="Its version the job trains on")
    new_version: int | None
    result: dict[str, Any] = Field(
        description="Dataset version, metrics of champion and candidate on the holdout, the rollout"
    )
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


JobSort = Literal["created", "-created", "model", "-model"]
"""How ``GET /v1/jobs`` orders its items; a leading ``-`` means descending."""


class JobPage(BaseModel):
    """One page of jobs and how many match in all."""

    items: list[Job]
    total: int
    limit: int
    offset: int


class JobLogs(BaseModel):
    id: str
    lines: list[str]
