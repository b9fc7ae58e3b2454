"""The deployer's tables (SQLAlchemy 2). ORM rows never leave ``store.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, MetaData, String, Text, UniqueConstraint
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


class KnownVersionRow(Base):
    """A version the deployer may serve: its ModelSpec, quota and deploy policy."""

    __tablename__ = "known_versions"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_known_versions_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    team: Mapped[str] = mapped_column(String(100), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    quota: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    deploy_policy: Mapped[str] = mapped_column(String(20), default="none")
    source: Mapped[str] = mapped_column(String(20), default="event")
    event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DeploymentRow(Base):
    """One version placed on the serving engine (pool or dedicated)."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_deployments_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    team: Mapped[str] = mapped_column(String(100), index=True)
    placement_kind: Mapped[str] = mapped_column(String(20))
    app: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str] = mapped_column(String(200))
    quota: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    state: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class RouteTableRow(Base):
    """A model's current route table."""

    __tablename__ = "route_tables"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    team: Mapped[str] = mapped_column(String(100), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    arms: Mapped[list[Any]] = mapped_column()
    batching: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    """The model's ``BatchSettings`` (None: the gateway's defaults)."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RouteHistoryRow(Base):
    """Every revision of every route table, so a rollback knows the previous stable version."""

    __tablename__ = "route_history"
    __table_args__ = (UniqueConstraint("model", "revision", name="uq_route_history_model_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    arms: Mapped[list[Any]] = mapped_column()
    cause: Mapped[str] = mapped_column(String(20))
    rollout_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class RolloutRow(Base):
    """A rollout: a persisted state machine, resumed after a restart."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    team: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(20))
    phase: Mapped[str] = mapped_column(String(20), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    quota: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class VersionActivityRow(Base):
    """When a version last served a request (from ``inference.logged``)."""

    __tablename__ = "version_activity"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_request_at: Mapped[datetime] = mapped_column(UtcDateTime())
