"""The delivery gate: a model's gate, each version's checks, and people's reviews of it.

A version registered with ``deploy_policy="gated"`` takes no traffic on registration. The
retrainer runs its checks (signature, smoke test, evaluation against the champion, latency) and
reports them here (``PUT .../checks``, only with the ``delivery:checks`` scope); people approve,
reject or comment (``POST .../reviews``). Whenever a gated version's state changes,
``version.checked`` is staged in the outbox in the same transaction; the deployer re-reads the
state here before it starts the canary (``ready``). Every write is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.auth import Principal, Role
from fleet_core.db import Database
from fleet_core.errors import Forbidden, InvalidInput, NotFound
from fleet_core.events import Topic, VersionChecked, make_event
from fleet_core.outbox import enqueue
from fleet_core.schemas import CheckResult, DeliveryGate, DeliveryState, DeployPolicy
from fleet_registry.models import (
    MESSAGING,
    DeliveryGateRow,
    ModelRow,
    VersionCheckRow,
    VersionReviewRow,
    VersionRow,
)
from fleet_registry.store import SOURCE, audit_row

CHECKS_SCOPE = "delivery:checks"
"""The token scope that may record a version's checks (the retrainer's); people cannot."""
REVIEW_HISTORY = 200
"""Reviews returned with a version's delivery state (newest last)."""


class CheckReport(BaseModel):
    """Every check's outcome on one version; replaces what was recorded before."""

    checks: list[CheckResult] = Field(min_length=1, max_length=10)


class ReviewCreate(BaseModel):
    decision: Literal["approve", "reject", "comment"]
    comment: Annotated[str, Field(max_length=4000)] | None = None


class CheckRecord(CheckResult):
    at: datetime
    by: str


class Review(BaseModel):
    kind: Literal["approve", "reject", "comment"]
    actor: str
    role: str
    comment: str | None
    at: datetime


class VersionDelivery(BaseModel):
    """Where one version stands in its model's delivery gate."""

    model: str
    version: int
    team: str
    deploy_policy: DeployPolicy
    state: DeliveryState | None = Field(description="None: the version's policy is not `gated`")
    reason: str
    gate: DeliveryGate
    checks: list[CheckRecord]
    reviews: list[Review]
    approvals: int
    approvals_required: int


def _now() -> datetime:
    return datetime.now(UTC)


def judge_state(
    policy: str, gate: DeliveryGate, checks: Sequence[CheckResult], reviews: Sequence[Review]
) -> tuple[DeliveryState | None, str, int]:
    """A version's state, the reason, and the approvals that count (distinct approvers)."""
    approvers = {r.actor for r in reviews if r.kind == "approve"}
    if policy != "gated":
        return None, f"deploy policy {policy!r}: the version is not gated", len(approvers)
    failed = [c for c in checks if c.status == "failed"]
    rejected = [r for r in reviews if r.kind == "reject"]
    state: DeliveryState
    if failed:
        state = "failed"
        reason = "; ".join(f"check {c.name!r} failed: {c.detail}" for c in failed)
    elif rejected:
        state = "rejected"
        last = rejected[-1]
        reason = f"rejected by {last.actor}" + (f": {last.comment}" if last.comment else "")
    elif not checks:
        state, reason = "checking", "waiting for its checks"
    elif len(approvers) < gate.approvals:
        state = "awaiting_approval"
        reason = f"checks passed; {len(approvers)} of {gate.approvals} approvals ({gate.approver_role})"
    else:
        state = "ready"
        reason = "checks passed" + (f"; approved by {', '.join(sorted(approvers))}" if approvers else "")
    return state, reason, len(approvers)


class Delivery:
    """Gates, checks and reviews over the registry's database."""

    def __init__(self, db: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        self.db = db
        self._on_commit = on_commit or (lambda: None)

    async def _model(self, s: AsyncSession, actor: Principal, name: str, role: Role) -> ModelRow:
        row = await s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise NotFound(f"model '{name}' does not exist", field="model")
        actor.require(role, row.team)
        return row

    async def _version(self, s: AsyncSession, model: ModelRow, version: int) -> VersionRow:
        row = await s.scalar(
            select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
        )
        if row is None:
            raise NotFound(f"model '{model.name}' has no version {version}", field="version")
        return row

    @staticmethod
    async def _gate(s: AsyncSession, model: ModelRow) -> DeliveryGate:
        row = await s.scalar(select(DeliveryGateRow).where(DeliveryGateRow.model_id == model.id))
        return DeliveryGate.model_validate(row.gate) if row else DeliveryGate()

    async def gate(self, actor: Principal, name: str) -> DeliveryGate:
        async with self.db.transaction() as s:
            return await self._gate(s, await self._model(s, actor, name, Role.VIEWER))

    async def put_gate(self, actor: Principal, name: str, gate: DeliveryGate) -> DeliveryGate:
        """Set a model's gate (the deployer role on its team): it applies to the checks run from now."""
        async with self.db.transaction() as s:
            model = await self._model(s, actor, name, Role.DEPLOYER)
            row = await s.scalar(select(DeliveryGateRow).where(DeliveryGateRow.model_id == model.id))
            if row is None:
                row = DeliveryGateRow(model_id=model.id)
                s.add(row)
            row.gate = gate.model_dump(mode="json")
            row.updated_at = _now()
            row.updated_by = actor.subject
            s.add(audit_row(actor, "model.gate", f"models/{name}/gate", gate=row.gate))
            return gate

    async def _delivery(self, s: AsyncSession, model: ModelRow, row: VersionRow) -> VersionDelivery:
        gate = await self._gate(s, model)
        checks = [
            CheckRecord(
                name=c.name,  # type: ignore[arg-type]
                status=c.status,  # type: ignore[arg-type]
                detail=c.detail,
                measured=c.measured,
                at=c.at,
                by=c.by,
            )
            for c in await s.scalars(
                select(VersionCheckRow)
                .where(VersionCheckRow.version_id == row.id)
                .order_by(VersionCheckRow.id)
            )
        ]
        reviews = [
            Review(kind=r.kind, actor=r.actor, role=r.role, comment=r.comment, at=r.at)  # type: ignore[arg-type]
            for r in await s.scalars(
                select(VersionReviewRow)
                .where(VersionReviewRow.version_id == row.id)
                .order_by(VersionReviewRow.id.desc())
                .limit(REVIEW_HISTORY)
            )
        ][::-1]
        state, reason, approvals = judge_state(row.deploy_policy, gate, checks, reviews)
        return VersionDelivery(
            model=model.name,
            version=row.version,
            team=model.team,
            deploy_policy=row.deploy_policy,  # type: ignore[arg-type]
            state=state,
            reason=reason,
            gate=gate,
            checks=checks,
            reviews=reviews,
            approvals=approvals,
            approvals_required=gate.approvals,
        )

    async def status(self, actor: Principal, name: str, version: int) -> VersionDelivery:
        async with self.db.transaction() as s:
            model = await self._model(s, actor, name, Role.VIEWER)
            return await self._delivery(s, model, await self._version(s, model, version))

    async def _announce(self, s: AsyncSession, after: VersionDelivery) -> None:
        """Stage ``version.checked`` for a gated version (in the caller's transaction)."""
        if after.state is None:
            return
        event = make_event(
            Topic.VERSION_CHECKED,
            VersionChecked(
                model=after.model,
                version=after.version,
                team=after.team,
                state=after.state,
                reason=after.reason,
                checks=[CheckResult.model_validate(c.model_dump(exclude={"at", "by"})) for c in after.checks],
                approvals=after.approvals,
                approvals_required=after.approvals_required,
            ),
            source=SOURCE,
        )
        await enqueue(s, MESSAGING.outbox, Topic.VERSION_CHECKED, event)

    async def record_checks(
        self, actor: Principal, name: str, version: int, report: CheckReport
    ) -> VersionDelivery:
        """The checker's outcomes (the deployer role on the team and the ``delivery:checks`` scope)."""
        if not actor.is_admin and CHECKS_SCOPE not in actor.scopes:
            raise Forbidden(f"recording checks needs a token with the {CHECKS_SCOPE!r} scope", field="scopes")
        names = [c.name for c in report.checks]
        if len(set(names)) != len(names):
            raise InvalidInput("each check may be reported once", field="checks")
        async with self.db.transaction() as s:
            model = await self._model(s, actor, name, Role.DEPLOYER)
            row = await self._version(s, model, version)
            await s.execute(delete(VersionCheckRow).where(VersionCheckRow.version_id == row.id))
            now = _now()
            for check in report.checks:
                s.add(
                    VersionCheckRow(
                        version_id=row.id,
                        name=check.name,
                        status=check.status,
                        detail=check.detail,
                        measured=check.measured,
                        at=now,
                        by=actor.subject,
                    )
                )
            await s.flush()
            after = await self._delivery(s, model, row)
            await self._announce(s, after)
            s.add(
                audit_row(
                    actor,
                    "version.checks",
                    f"models/{name}/versions/{version}",
                    checks={c.name: c.status for c in report.checks},
                    state=after.state,
                )
            )
        self._on_commit()
        return after

    async def review(self, actor: Principal, name: str, version: int, body: ReviewCreate) -> VersionDelivery:
        """Approve or reject (the gate's approver role on the team, never the registrant), or
        comment (the scientist role)."""
        if body.decision == "comment" and not (body.comment and body.comment.strip()):
            raise InvalidInput("a comment needs its text", field="comment")
        async with self.db.transaction() as s:
            model = await self._model(s, actor, name, Role.VIEWER)
            row = await self._version(s, model, version)
            before = await self._delivery(s, model, row)
            if body.decision == "comment":
                actor.require(Role.SCIENTIST, model.team)
            else:
                actor.require(Role(before.gate.approver_role), model.team)
                if actor.subject == row.created_by:
                    raise Forbidden(
                        f"'{actor.subject}' registered v{version} and may not {body.decision} it: "
                        "someone else reviews a version",
                        field="decision",
                    )
                if body.decision == "approve" and any(
                    r.kind == "approve" and r.actor == actor.subject for r in before.reviews
                ):
                    return before  # approving twice counts once and changes nothing
            s.add(
                VersionReviewRow(
                    version_id=row.id,
                    kind=body.decision,
                    actor=actor.subject,
                    role=str(actor.role),
                    comment=body.comment,
                    at=_now(),
                )
            )
            await s.flush()
            after = await self._delivery(s, model, row)
            if (after.state, after.approvals) != (before.state, before.approvals):
                await self._announce(s, after)
            s.add(
                audit_row(
                    actor,
                    f"version.{body.decision}",
                    f"models/{name}/versions/{version}",
                    comment=body.comment,
                    state=after.state,
                )
            )
        self._on_commit()
        return after
