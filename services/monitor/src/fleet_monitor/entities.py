"""What the monitor's store returns: plain pydantic entities, never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

AlertKind = Literal["drift", "anomaly", "rollout"]
AlertState = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]


class Alert(BaseModel):
    """An alert with its lifecycle: ``firing`` from ``started_at``, ``resolved`` at ``resolved_at``."""

    id: int
    fingerprint: str = Field(description="Stable identity: kind, name, model, version and arm")
    kind: AlertKind
    name: str = Field(description="What fired, e.g. 'data_drift', 'latency', 'probing'")
    model: str
    version: int | None
    severity: Severity
    state: AlertState
    summary: str
    value: float | None
    details: dict[str, Any]
    started_at: datetime
    resolved_at: datetime | None


class AlertDraft(BaseModel):
    """An alert about to open."""

    kind: AlertKind
    name: str
    model: str
    version: int | None = None
    arm: str | None = None
    severity: Severity = "warning"
    summary: str
    value: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.kind, self.name, self.model, self.version, self.arm)


def alert_fingerprint(kind: str, name: str, model: str, version: int | None, arm: str | None = None) -> str:
    return "/".join([kind, name, model, "" if version is None else str(version), arm or ""])
