"""The registry's tables (SQLAlchemy 2). ORM rows never leave ``store.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
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


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    team: Mapped[str] = mapped_column(String(100), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    created_by: Mapped[str] = mapped_column(String(200))


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        # Not unique: an explicit version number may register the same bytes again (ADR 0024).
        Index("ix_model_versions_model_sha256", "model_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    flavor: Mapped[str] = mapped_column(String(20))
    task: Mapped[str] = mapped_column(String(20), default="other")
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    reference_profile: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    deploy_policy: Mapped[str] = mapped_column(String(20), default="none")
    quota: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    image: Mapped[str | None] = mapped_column(String(500))
    example_input: Mapped[list[Any] | None] = mapped_column(JsonColumn)
    untrusted_types: Mapped[list[Any]] = mapped_column(default=list)
    origin: Mapped[str] = mapped_column(String(20), default="manual")
    parent_version: Mapped[int | None] = mapped_column(Integer)
    trigger_event_id: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(64))


class AliasRow(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias", name="uq_model_aliases_model_alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    team: Mapped[str] = mapped_column(String(100), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_version"),
        UniqueConstraint("dataset_id", "content_hash", name="uq_dataset_versions_dataset_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(20))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    schema_: Mapped[dict[str, Any]] = mapped_column("schema", default=dict)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(100), index=True)
    resource: Mapped[str] = mapped_column(String(400))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(20), default="ok", server_default="ok", index=True)
    """ok, or denied (a refused attempt: 401/403)."""
    service: Mapped[str] = mapped_column(String(40), default="registry", server_default="registry")
    """The service where the write happened (the registry keeps every service's audit trail)."""


class TokenRow(Base):
    __tablename__ = "issued_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(20))
    teams: Mapped[list[Any]] = mapped_column(default=list)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    issued_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class WebhookRow(Base):
    """A team's subscription of an outside HTTP endpoint to some of the platform's events."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(default=list)
    """Topic names (``fleet_core.topics.WEBHOOK_TOPICS``)."""
    secret: Mapped[str] = mapped_column(String(100))
    """The Standard Webhooks signing secret (``whsec_...``): shown once, at creation."""
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class WebhookDeliveryRow(Base):
    """One event for one webhook: pending until delivered, or failed after its last attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column()
    """The CloudEvent as delivered (structured mode), without any ``fleetauth`` token."""
    state: Mapped[str] = mapped_column(String(20))
    """pending, delivered or failed."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DeliveryGateRow(Base):
    """A model's delivery gate (``fleet_core.schemas.DeliveryGate``); none: the defaults."""

    __tablename__ = "delivery_gates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), unique=True)
    gate: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class VersionCheckRow(Base):
    """One check's outcome on one version, as the checker (the retrainer) reported it."""

    __tablename__ = "version_checks"
    __table_args__ = (UniqueConstraint("version_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    measured: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    by: Mapped[str] = mapped_column(String(200))


class VersionReviewRow(Base):
    """An approval, a rejection or a comment on a version, by a person (append-only)."""

    __tablename__ = "version_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    """approve, reject or comment."""
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
