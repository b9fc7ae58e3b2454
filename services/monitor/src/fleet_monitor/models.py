"""The monitor's tables (SQLAlchemy 2). ORM rows never leave ``store.py``.

Windows live in memory (they are rebuilt from traffic within minutes); what must survive a
restart is here: the versions and their reference profiles, the route tables, per-model
thresholds, the alerts with their lifecycle, and the outbox and inbox.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fleet_core.db import JsonColumn, UtcDateTime
from fleet_core.outbox import messaging_tables

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JsonColumn, list[Any]: JsonColumn}


MESSAGING = messaging_tables(Base.metadata)


class VersionRow(Base):
    """A registered version as ``model.registered`` described it (profile and metrics included)."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_versions_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    team: Mapped[str] = mapped_column(String(100), index=True)
    registered: Mapped[dict[str, Any]] = mapped_column()
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RouteRow(Base):
    """The latest ``rollout.updated`` of a model: its route table and rollout phase."""

    __tablename__ = "routes"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    update: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ModelConfigRow(Base):
    """Per-model thresholds and window sizes (defaults apply to anything not set)."""

    __tablename__ = "model_config"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class AlertRow(Base):
    """An alert: opened firing, later resolved. One open alert per fingerprint."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(400), index=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    summary: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
