"""The retrainer's tables (SQLAlchemy 2). ORM rows never leave ``store.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, MetaData, String, Text
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


class JobRow(Base):
    """A retraining job: queued, running, then registered, rejected or failed."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    team: Mapped[str | None] = mapped_column(String(100), index=True)
    """The model's team when the job was created (None: unknown, seen only by all-teams principals)."""
    trigger: Mapped[str] = mapped_column(String(20))
    trigger_event_id: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), index=True)
    champion_version: Mapped[int | None] = mapped_column(Integer)
    source_dataset: Mapped[str | None] = mapped_column(String(100))
    """The dataset a ``dataset`` trigger named (None: the champion's own training dataset)."""
    source_dataset_version: Mapped[int | None] = mapped_column(Integer)
    new_version: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    logs: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class PolicyRow(Base):
    """A model's retraining policy (service defaults apply to models without one)."""

    __tablename__ = "policies"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
