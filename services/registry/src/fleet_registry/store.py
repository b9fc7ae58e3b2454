"""The registry store: every read and write of models, versions, datasets, audit and tokens.

Writes check the caller's role and team, append to the audit log and, where an
event is due, stage it in the outbox, all in one transaction. Rows are turned
into entities before they leave this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.artifacts import StoredArtifact
from fleet_core.auth import Principal, Role
from fleet_core.db import Database
from fleet_core.errors import Conflict, Forbidden, InvalidInput, NotFound
from fleet_core.events import AuditRecorded, DatasetUpdated, ModelRegistered, Topic, make_event
from fleet_core.log import current_request_id, get_logger
from fleet_core.outbox import claim, enqueue
from fleet_core.privacy import PiiHasher
from fleet_core.schemas import DatasetRef, Recipe, ReferenceProfile, Signature
from fleet_core.validation import validate_rows
from fleet_registry.api.schemas import (
    DatasetCreate,
    DatasetVersionMetadata,
    ModelCreate,
    ModelUpdate,
    VersionMetadata,
    VersionUpdate,
)
from fleet_registry.entities import (
    AuditEntry,
    Dataset,
    DatasetVersion,
    IssuedToken,
    Lineage,
    Model,
    ModelSort,
    ModelVersion,
    ModelVersionSummary,
    Page,
)
from fleet_registry.models import (
    MESSAGING,
    AliasRow,
    AuditRow,
    DatasetRow,
    DatasetVersionRow,
    DeliveryGateRow,
    ModelRow,
    TokenRow,
    VersionRow,
)
from fleet_registry.privacy import private_example, private_profile

log = get_logger(__name__)
SOURCE = "/fleet/registry"
NEXT_NUMBER_ATTEMPTS = 10
"""Registrations without an explicit number retry this often when a concurrent one takes it."""


def _now() -> datetime:
    return datetime.now(UTC)


def audit_row(actor: Principal, action: str, resource: str, **detail: Any) -> AuditRow:
    """One entry of the registry's audit log, for the caller to add to its transaction."""
    return AuditRow(
        at=_now(),
        actor=actor.subject,
        role=str(actor.role),
        action=action,
        resource=resource,
        detail=detail,
        request_id=current_request_id(),
    )


async def _approvals_required(s: AsyncSession, model: ModelRow) -> int:
    """How many approvals the model's delivery gate asks for (0 without a gate)."""
    gate = await s.scalar(select(DeliveryGateRow.gate).where(DeliveryGateRow.model_id == model.id))
    return int((gate or {}).get("approvals", 0))


def _visible(principal: Principal, team_column: Any) -> Any:
    if principal.sees_all_teams:
        return True
    return team_column.in_(principal.teams)


_MODEL_ORDER: dict[str, list[Any]] = {
    "name": [ModelRow.name],
    "-name": [ModelRow.name.desc()],
    "updated": [ModelRow.updated_at, ModelRow.name],
    "-updated": [ModelRow.updated_at.desc(), ModelRow.name],
    "created": [ModelRow.created_at, ModelRow.name],
    "-created": [ModelRow.created_at.desc(), ModelRow.name],
}
"""ORDER BY per sort key; names are unique, so pages never overlap."""

AUDIT_CONSUMER = "registry"


class RegistryStore:
    """Registry persistence and rules over one SQLAlchemy database."""

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[], None] | None = None,
        pii_hasher: PiiHasher | None = None,
    ) -> None:
        self.db = db
        self._on_commit = on_commit or (lambda: None)
        self._pii = pii_hasher

    # ------------------------------------------------------------------ helpers

    async def _audit(
        self, s: AsyncSession, actor: Principal, action: str, resource: str, **detail: Any
    ) -> None:
        s.add(audit_row(actor, action, resource, **detail))

    async def _model_row(self, s: AsyncSession, name: str) -> ModelRow:
        row = await s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise NotFound(f"model '{name}' does not exist", field="model")
        return row

    async def _readable_model(self, s: AsyncSession, actor: Principal, name: str) -> ModelRow:
        row = await self._model_row(s, name)
        actor.require(Role.VIEWER, row.team)
        return row

    async def _writable_model(
        self, s: AsyncSession, actor: Principal, name: str, role: Role = Role.SCIENTIST
    ) -> ModelRow:
        row = await self._model_row(s, name)
        actor.require(role, row.team)
        return row

    async def _aliases(self, s: AsyncSession, model_id: int) -> dict[str, int]:
        rows = (
            await s.execute(select(AliasRow.alias, AliasRow.version).where(AliasRow.model_id == model_id))
        ).all()
        return {a: v for a, v in rows}

    async def _model_entity(self, s: AsyncSession, row: ModelRow) -> Model:
        return (await self._model_entities(s, [row]))[0]

    async def _model_entities(self, s: AsyncSession, rows: Sequence[ModelRow]) -> list[Model]:
        """Models with their latest version and aliases: two queries for a whole page."""
        ids = [r.id for r in rows]
        latest = dict(
            (
                await s.execute(
                    select(VersionRow.model_id, func.max(VersionRow.version))
                    .where(VersionRow.model_id.in_(ids))
                    .group_by(VersionRow.model_id)
                )
            ).all()
        )
        aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
        for model_id, alias, version in (
            await s.execute(
                select(AliasRow.model_id, AliasRow.alias, AliasRow.version).where(AliasRow.model_id.in_(ids))
            )
        ).all():
            aliases[model_id][alias] = version
        return [
            Model(
                name=row.name,
                team=row.team,
                description=row.description,
                tags=list(row.tags or []),
                archived=row.archived,
                created_at=row.created_at,
                updated_at=row.updated_at,
                created_by=row.created_by,
                latest_version=latest.get(row.id),
                aliases=aliases[row.id],
            )
            for row in rows
        ]

    async def _dataset_ref(self, s: AsyncSession, dataset_version_id: int | None) -> DatasetRef | None:
        if dataset_version_id is None:
            return None
        dv = await self._dataset_version_by_id(s, dataset_version_id)
        return dv.ref()

    async def _dataset_version_by_id(self, s: AsyncSession, id_: int) -> DatasetVersion:
        row = (
            await s.execute(
                select(DatasetVersionRow, DatasetRow.name).join(DatasetRow).where(DatasetVersionRow.id == id_)
            )
        ).one()
        return _dataset_version_entity(row[0], row[1])

    async def _version_entity(self, s: AsyncSession, model: ModelRow, row: VersionRow) -> ModelVersion:
        aliases = sorted(a for a, v in (await self._aliases(s, model.id)).items() if v == row.version)
        return ModelVersion(
            model=model.name,
            version=row.version,
            team=model.team,
            flavor=row.flavor,  # type: ignore[arg-type]
            task=row.task,
            artifact_uri=row.artifact_uri,
            sha256=row.sha256,  # type: ignore[arg-type]
            size_bytes=row.size_bytes,
            signature=Signature.model_validate(row.signature),
            metrics=row.metrics or {},
            hyperparameters=row.hyperparameters or {},
            dataset_version=await self._dataset_ref(s, row.dataset_version_id),
            recipe=_stored_recipe(model.name, row.version, row.recipe),
            reference_profile=row.reference_profile,  # type: ignore[arg-type]
            deploy_policy=row.deploy_policy,
            quota=row.quota,
            image=row.image,  # type: ignore[arg-type]
            example_input=row.example_input,
            untrusted_types=list(row.untrusted_types or []),
            origin=row.origin,
            parent_version=row.parent_version,  # type: ignore[arg-type]
            trigger_event_id=row.trigger_event_id,
            tags=list(row.tags or []),
            description=row.description,
            aliases=aliases,
            created_at=row.created_at,
            created_by=row.created_by,
            event_id=row.event_id,
        )

    async def _summary(
        self, s: AsyncSession, model: ModelRow, row: VersionRow, aliases: dict[str, int]
    ) -> ModelVersionSummary:
        return ModelVersionSummary(
            model=model.name,
            version=row.version,
            flavor=row.flavor,
            task=row.task,  # type: ignore[arg-type]
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            metrics=row.metrics or {},
            deploy_policy=row.deploy_policy,
            origin=row.origin,  # type: ignore[arg-type]
            parent_version=row.parent_version,
            dataset_version=await self._dataset_ref(s, row.dataset_version_id),
            tags=list(row.tags or []),
            aliases=sorted(a for a, v in aliases.items() if v == row.version),
            created_at=row.created_at,
            created_by=row.created_by,
        )

    async def _version_row(
        self, s: AsyncSession, model: ModelRow, version: int, *, field: str = "version"
    ) -> VersionRow:
        row = await s.scalar(
            select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
        )
        if row is None:
            raise NotFound(f"model '{model.name}' has no version {version}", field=field)
        return row

    @staticmethod
    async def _page(s: AsyncSession, stmt: Select[Any], limit: int, offset: int) -> tuple[Sequence[Any], int]:
        total = await s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        rows = (await s.scalars(stmt.limit(limit).offset(offset))).all()
        return rows, int(total or 0)

    # ------------------------------------------------------------------ models

    async def create_model(self, actor: Principal, data: ModelCreate) -> Model:
        actor.require(Role.SCIENTIST, data.team)
        async with self.db.transaction() as s:
            if await s.scalar(select(ModelRow.id).where(ModelRow.name == data.name)):
                raise Conflict(f"model '{data.name}' already exists", field="name")
            now = _now()
            row = ModelRow(
                name=data.name,
                team=data.team,
                description=data.description,
                tags=data.tags,
                archived=False,
                created_at=now,
                updated_at=now,
                created_by=actor.subject,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError as exc:
                raise Conflict(f"model '{data.name}' already exists", field="name") from exc
            await self._audit(s, actor, "model.create", f"models/{data.name}", team=data.team)
            return await self._model_entity(s, row)

    async def list_models(
        self,
        actor: Principal,
        *,
        team: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        include_archived: bool = False,
        sort: ModelSort = "name",
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Model]:
        actor.require_role(Role.VIEWER)
        stmt = select(ModelRow).where(_visible(actor, ModelRow.team)).order_by(*_MODEL_ORDER[sort])
        if team:
            stmt = stmt.where(ModelRow.team == team)
        if name:
            stmt = stmt.where(ModelRow.name.contains(name, autoescape=True))
        if not include_archived:
            stmt = stmt.where(ModelRow.archived.is_(False))
        async with self.db.sessions() as s:
            if tag:
                # Tags are a JSON list; filter in Python to stay portable across SQLite and PostgreSQL.
                rows = [r for r in (await s.scalars(stmt)).all() if tag in (r.tags or [])]
                total, rows = len(rows), rows[offset : offset + limit]
            else:
                rows, total = await self._page(s, stmt, limit, offset)  # type: ignore[assignment]
            return Page(items=await self._model_entities(s, rows), total=total, limit=limit, offset=offset)

    async def get_model(self, actor: Principal, name: str) -> Model:
        async with self.db.sessions() as s:
            return await self._model_entity(s, await self._readable_model(s, actor, name))

    async def update_model(self, actor: Principal, name: str, data: ModelUpdate) -> Model:
        async with self.db.transaction() as s:
            row = await self._writable_model(s, actor, name)
            changes = data.model_dump(exclude_unset=True)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = _now()
            await self._audit(s, actor, "model.update", f"models/{name}", changes=changes)
            return await self._model_entity(s, row)

    async def archive_model(self, actor: Principal, name: str, archived: bool = True) -> Model:
        async with self.db.transaction() as s:
            row = await self._writable_model(s, actor, name, Role.DEPLOYER)
            row.archived = archived
            row.updated_at = _now()
            await self._audit(s, actor, "model.archive" if archived else "model.unarchive", f"models/{name}")
            return await self._model_entity(s, row)

    # ------------------------------------------------------------------ versions

    async def check_can_register(self, actor: Principal, name: str, meta: VersionMetadata) -> str:
        """Fail fast, before an upload is stored, if the caller may not register here; the model's
        team."""
        async with self.db.sessions() as s:
            model = await self._writable_model(s, actor, name)
            self._check_registration_rules(actor, model, meta, await _approvals_required(s, model))
            await self._check_dataset_team(s, model, meta)
            if meta.version is not None:
                held = await s.scalar(
                    select(VersionRow.sha256).where(
                        VersionRow.model_id == model.id, VersionRow.version == meta.version
                    )
                )
                # The same number with the bytes it already holds is a re-run (answered with the
                # existing version once the upload is hashed); anything else is refused before it
                # is stored.
                if held is not None and held != meta.sha256:
                    raise Conflict(f"model '{name}' already has version {meta.version}", field="version")
            return model.team

    async def check_object_owner(
        self, actor: Principal, team: str, owner: tuple[str, str] | None, *, field: str
    ) -> None:
        """Refuse (403) an existing object of the artifact store that does not belong to ``team``:
        an object under another model, dataset or team prefix, or, for anyone but those who see
        every team, an object under no team's prefix."""
        async with self.db.sessions() as s:
            if owner is None:
                if not actor.sees_all_teams:
                    raise Forbidden(
                        "objects outside models/, datasets/ and teams/<team>/ belong to no team; stage "
                        f"artifacts under teams/{team}/ instead",
                        field=field,
                    )
                return
            kind, name = owner
            if kind == "team":
                owner_team: str | None = name
            else:
                row_type = ModelRow if kind == "model" else DatasetRow
                owner_team = await s.scalar(select(row_type.team).where(row_type.name == name))
            if owner_team != team:
                # The same answer whether or not the owner exists: no probing of other teams' names.
                raise Forbidden(f"that object does not belong to team '{team}'", field=field)

    async def _check_dataset_team(
        self, s: AsyncSession, model: ModelRow, meta: VersionMetadata
    ) -> DatasetVersionRow | None:
        if meta.dataset_version is None:
            return None
        dataset = await self._dataset_row(s, meta.dataset_version.dataset)
        if dataset.team != model.team:
            raise Forbidden(
                f"dataset '{dataset.name}' belongs to team '{dataset.team}', not to team "
                f"'{model.team}' of model '{model.name}'; a version may only reference its own team's data",
                field="dataset_version",
            )
        return await self._dataset_version_row(s, meta.dataset_version.dataset, meta.dataset_version.version)

    @staticmethod
    def _check_registration_rules(
        actor: Principal, model: ModelRow, meta: VersionMetadata, approvals_required: int
    ) -> None:
        if model.archived:
            raise Conflict(
                f"model '{model.name}' is archived; unarchive it to register versions", field="model"
            )
        if meta.flavor == "python":
            # Custom Python code runs inside the serving processes: trusted publishers only.
            actor.require(Role.DEPLOYER, model.team)
        # Taking traffic (or reserving resources) at registration is a deployment: the same role
        # the deployer's API demands, on the model's own team. A gated version whose gate needs a
        # person's approval is not: anyone who may register may ask for it (fleet_registry.delivery).
        reviewed = meta.deploy_policy == "gated" and approvals_required > 0
        for field, live in (
            ("deploy_policy", meta.deploy_policy != "none" and not reviewed),
            ("quota", meta.quota is not None),
        ):
            if live and not (actor.has_role(Role.DEPLOYER) and actor.in_team(model.team)):
                raise Forbidden(
                    f"registering with {field} set deploys the version: it needs role 'deployer' on team "
                    f"'{model.team}', and '{actor.subject}' is '{actor.role}'"
                    + ("" if actor.in_team(model.team) else " outside that team"),
                    field=field,
                )
        if meta.example_input:
            problems = validate_rows(meta.signature, meta.example_input, prefix="example_input")
            if problems:
                raise InvalidInput(
                    f"{problems[0].field} {problems[0].message}",
                    field=problems[0].field,
                    errors=[p.as_dict() for p in problems],
                )
        if meta.origin == "retrain" and meta.parent_version is None:
            raise InvalidInput("a retrained version must name its parent_version", field="parent_version")

    async def create_version(
        self,
        actor: Principal,
        name: str,
        meta: VersionMetadata,
        artifact: StoredArtifact,
        *,
        untrusted_types: list[str] | None = None,
    ) -> tuple[ModelVersion, bool]:
        """Register a frozen version and stage ``model.registered`` in the same transaction; or,
        when the model already holds these bytes, return that version (``created=False``) and
        change nothing (ADR 0024)."""
        for attempt in range(NEXT_NUMBER_ATTEMPTS):
            try:
                entity, created = await self._register_version(actor, name, meta, artifact, untrusted_types)
                break
            except Conflict as exc:
                # Without an explicit number, losing the next number to a concurrent registration
                # is not the caller's conflict: take the one after it (or, when the winner
                # registered the same bytes, find it on the next attempt and return it).
                if meta.version is not None or exc.field != "version" or attempt == NEXT_NUMBER_ATTEMPTS - 1:
                    raise
        if created:
            self._on_commit()
        return entity, created

    @staticmethod
    async def _same_bytes(
        s: AsyncSession, model: ModelRow, meta: VersionMetadata, sha256: str
    ) -> VersionRow | None:
        """The version of ``model`` that a registration of these bytes repeats, if any.

        Without an explicit number: the lowest version holding the same sha256. With one: that
        version, if it holds the same sha256 (a different number is a new version: the way to
        register the same bytes again on purpose). A repeat whose serving contract or lineage
        differs is refused (409 naming the field): answering it with the old version would
        silently drop what the caller meant to change.
        """
        stmt = select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.sha256 == sha256)
        if meta.version is not None:
            stmt = stmt.where(VersionRow.version == meta.version)
        row = await s.scalar(stmt.order_by(VersionRow.version).limit(1))
        if row is None:
            return None
        wanted = {
            "flavor": meta.flavor,
            "signature": meta.signature.model_dump(mode="json"),
            "origin": meta.origin,
            "parent_version": meta.parent_version,
        }
        held = {
            "flavor": row.flavor,
            "signature": Signature.model_validate(row.signature).model_dump(mode="json"),
            "origin": row.origin,
            "parent_version": row.parent_version,
        }
        for field, value in wanted.items():
            if held[field] != value:
                raise Conflict(
                    f"version {row.version} of model '{model.name}' already holds these bytes "
                    f"(sha256 {sha256[:12]}…) with a different {field}; pass an explicit, unused "
                    "`version` to register the same bytes as a new version",
                    field=field,
                )
        return row

    def _without_raw_pii(
        self, meta: VersionMetadata
    ) -> tuple[ReferenceProfile | None, list[dict[str, Any]] | None]:
        """The reference profile and example input as stored: PII values hashed or left out."""
        if not any(spec.pii for spec in meta.signature.inputs):
            return meta.reference_profile, meta.example_input
        if self._pii is None:
            raise RuntimeError(
                "this registry store has no PII hasher (FLEET_PII_SALT) to register PII fields"
            )
        return (
            private_profile(meta.reference_profile, meta.signature, self._pii),
            private_example(meta.example_input, meta.signature, self._pii),
        )

    async def _register_version(
        self,
        actor: Principal,
        name: str,
        meta: VersionMetadata,
        artifact: StoredArtifact,
        untrusted_types: list[str] | None,
    ) -> tuple[ModelVersion, bool]:
        async with self.db.transaction() as s:
            model = await self._writable_model(s, actor, name)
            self._check_registration_rules(actor, model, meta, await _approvals_required(s, model))
            # Validated raw (above), stored and announced hashed: the registry keeps no raw PII.
            profile, example = self._without_raw_pii(meta)
            # The highest number first, then the same-bytes look-up: a concurrent registration of
            # the same bytes that commits in between is then either seen here or takes the number
            # this one picks (a conflict, retried, and found on the next attempt).
            current = await s.scalar(
                select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
            )
            same = await self._same_bytes(s, model, meta, artifact.sha256)
            if same is not None:
                return await self._version_entity(s, model, same), False
            number = meta.version or (current or 0) + 1
            if await s.scalar(
                select(VersionRow.id).where(VersionRow.model_id == model.id, VersionRow.version == number)
            ):
                raise Conflict(f"model '{name}' already has version {number}", field="version")
            if meta.parent_version is not None:
                await self._version_row(s, model, meta.parent_version, field="parent_version")
            dataset_version_id = None
            dataset_ref = None
            dv = await self._check_dataset_team(s, model, meta)
            if dv is not None:
                dataset_version_id = dv.id
                dataset_ref = (await self._dataset_version_by_id(s, dv.id)).ref()
            event = make_event(
                Topic.MODEL_REGISTERED,
                ModelRegistered(
                    model=name,
                    version=number,
                    team=model.team,
                    flavor=meta.flavor,
                    task=meta.task,
                    artifact_uri=artifact.uri,
                    sha256=artifact.sha256,
                    size_bytes=artifact.size_bytes,
                    signature=meta.signature,
                    metrics=meta.metrics,
                    hyperparameters=meta.hyperparameters,
                    dataset_version=dataset_ref,
                    reference_profile=profile,
                    recipe=meta.recipe,
                    deploy_policy=meta.deploy_policy,
                    quota=meta.quota,
                    image=meta.image,
                    example_input=example,
                    origin=meta.origin,
                    parent_version=meta.parent_version,
                    trigger_event_id=meta.trigger_event_id,
                    registered_by=actor.subject,
                ),
                source=SOURCE,
            )
            row = VersionRow(
                model_id=model.id,
                version=number,
                flavor=meta.flavor,
                task=meta.task,
                artifact_uri=artifact.uri,
                sha256=artifact.sha256,
                size_bytes=artifact.size_bytes,
                signature=meta.signature.model_dump(mode="json"),
                metrics=meta.metrics,
                hyperparameters=meta.hyperparameters,
                dataset_version_id=dataset_version_id,
                recipe=meta.recipe.model_dump(mode="json") if meta.recipe else None,
                reference_profile=profile.model_dump(mode="json") if profile else None,
                deploy_policy=meta.deploy_policy,
                quota=meta.quota.model_dump(mode="json") if meta.quota else None,
                image=meta.image,
                example_input=example,
                untrusted_types=untrusted_types or [],
                origin=meta.origin,
                parent_version=meta.parent_version,
                trigger_event_id=meta.trigger_event_id,
                tags=meta.tags,
                description=meta.description,
                created_at=_now(),
                created_by=actor.subject,
                event_id=event.id,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError as exc:  # a concurrent registration took the number
                raise Conflict(f"model '{name}' already has version {number}", field="version") from exc
            for alias in meta.aliases:
                await self._set_alias(s, model, alias, number, actor)
            model.updated_at = _now()
            await enqueue(s, MESSAGING.outbox, Topic.MODEL_REGISTERED, event)
            await self._audit(
                s,
                actor,
                "version.register",
                f"models/{name}/versions/{number}",
                sha256=artifact.sha256,
                flavor=meta.flavor,
                event_id=event.id,
            )
            return await self._version_entity(s, model, row), True

    async def list_versions(
        self, actor: Principal, name: str, *, limit: int = 50, offset: int = 0
    ) -> Page[ModelVersionSummary]:
        async with self.db.sessions() as s:
            model = await self._readable_model(s, actor, name)
            stmt = (
                select(VersionRow).where(VersionRow.model_id == model.id).order_by(VersionRow.version.desc())
            )
            rows, total = await self._page(s, stmt, limit, offset)
            aliases = await self._aliases(s, model.id)
            return Page(
                items=[await self._summary(s, model, r, aliases) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
            )

    async def get_version(self, actor: Principal, name: str, version: int) -> ModelVersion:
        async with self.db.sessions() as s:
            model = await self._readable_model(s, actor, name)
            return await self._version_entity(s, model, await self._version_row(s, model, version))

    async def resolve_alias(self, actor: Principal, name: str, alias: str) -> ModelVersion:
        async with self.db.sessions() as s:
            model = await self._readable_model(s, actor, name)
            version = (await self._aliases(s, model.id)).get(alias)
            if version is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'", field="alias")
            return await self._version_entity(s, model, await self._version_row(s, model, version))

    async def update_version(
        self, actor: Principal, name: str, version: int, data: VersionUpdate
    ) -> ModelVersion:
        async with self.db.transaction() as s:
            model = await self._writable_model(s, actor, name)
            row = await self._version_row(s, model, version)
            changes = data.model_dump(exclude_unset=True)
            for key, value in changes.items():
                setattr(row, key, value)
            await self._audit(
                s, actor, "version.update", f"models/{name}/versions/{version}", changes=changes
            )
            return await self._version_entity(s, model, row)

    async def _set_alias(
        self, s: AsyncSession, model: ModelRow, alias: str, version: int, actor: Principal
    ) -> int | None:
        existing = await s.scalar(
            select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
        )
        previous = existing.version if existing else None
        if existing:
            existing.version, existing.updated_at, existing.updated_by = version, _now(), actor.subject
        else:
            s.add(
                AliasRow(
                    model_id=model.id,
                    alias=alias,
                    version=version,
                    updated_at=_now(),
                    updated_by=actor.subject,
                )
            )
        await s.flush()
        return previous

    async def set_alias(self, actor: Principal, name: str, alias: str, version: int) -> ModelVersion:
        async with self.db.transaction() as s:
            model = await self._writable_model(s, actor, name)
            row = await self._version_row(s, model, version)
            previous = await self._set_alias(s, model, alias, version, actor)
            await self._audit(
                s, actor, "alias.set", f"models/{name}/aliases/{alias}", version=version, previous=previous
            )
            return await self._version_entity(s, model, row)

    async def delete_alias(self, actor: Principal, name: str, alias: str) -> None:
        async with self.db.transaction() as s:
            model = await self._writable_model(s, actor, name)
            row = await s.scalar(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
            )
            if row is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'", field="alias")
            await s.delete(row)
            await self._audit(s, actor, "alias.delete", f"models/{name}/aliases/{alias}", version=row.version)

    async def lineage(self, actor: Principal, name: str, version: int) -> Lineage:
        async with self.db.sessions() as s:
            model = await self._readable_model(s, actor, name)
            row = await self._version_row(s, model, version)
            aliases = await self._aliases(s, model.id)
            parent = None
            if row.parent_version is not None:
                prow = await s.scalar(
                    select(VersionRow).where(
                        VersionRow.model_id == model.id, VersionRow.version == row.parent_version
                    )
                )
                parent = await self._summary(s, model, prow, aliases) if prow else None
            children_rows = (
                await s.scalars(
                    select(VersionRow)
                    .where(VersionRow.model_id == model.id, VersionRow.parent_version == version)
                    .order_by(VersionRow.version)
                )
            ).all()
            return Lineage(
                model=name,
                version=version,
                origin=row.origin,
                created_at=row.created_at,  # type: ignore[arg-type]
                created_by=row.created_by,
                trigger_event_id=row.trigger_event_id,
                dataset_version=await self._dataset_version_by_id(s, row.dataset_version_id)
                if row.dataset_version_id
                else None,
                parent=parent,
                children=[await self._summary(s, model, c, aliases) for c in children_rows],
            )

    # ------------------------------------------------------------------ datasets

    async def _dataset_row(self, s: AsyncSession, name: str) -> DatasetRow:
        row = await s.scalar(select(DatasetRow).where(DatasetRow.name == name))
        if row is None:
            raise NotFound(f"dataset '{name}' does not exist", field="dataset")
        return row

    async def _dataset_version_row(self, s: AsyncSession, name: str, version: int) -> DatasetVersionRow:
        ds = await self._dataset_row(s, name)
        row = await s.scalar(
            select(DatasetVersionRow).where(
                DatasetVersionRow.dataset_id == ds.id, DatasetVersionRow.version == version
            )
        )
        if row is None:
            raise NotFound(f"dataset '{name}' has no version {version}", field="dataset_version")
        return row

    async def _dataset_entity(self, s: AsyncSession, row: DatasetRow) -> Dataset:
        latest = await s.scalar(
            select(func.max(DatasetVersionRow.version)).where(DatasetVersionRow.dataset_id == row.id)
        )
        return Dataset(
            name=row.name,
            team=row.team,
            description=row.description,
            tags=list(row.tags or []),
            created_at=row.created_at,
            created_by=row.created_by,
            latest_version=latest,
        )

    async def create_dataset(self, actor: Principal, data: DatasetCreate) -> Dataset:
        actor.require(Role.SCIENTIST, data.team)
        async with self.db.transaction() as s:
            if await s.scalar(select(DatasetRow.id).where(DatasetRow.name == data.name)):
                raise Conflict(f"dataset '{data.name}' already exists", field="name")
            row = DatasetRow(
                name=data.name,
                team=data.team,
                description=data.description,
                tags=data.tags,
                created_at=_now(),
                created_by=actor.subject,
            )
            s.add(row)
            await s.flush()
            await self._audit(s, actor, "dataset.create", f"datasets/{data.name}", team=data.team)
            return await self._dataset_entity(s, row)

    async def list_datasets(
        self,
        actor: Principal,
        *,
        team: str | None = None,
        name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Dataset]:
        actor.require_role(Role.VIEWER)
        stmt = select(DatasetRow).where(_visible(actor, DatasetRow.team)).order_by(DatasetRow.name)
        if team:
            stmt = stmt.where(DatasetRow.team == team)
        if name:
            stmt = stmt.where(DatasetRow.name.contains(name, autoescape=True))
        async with self.db.sessions() as s:
            rows, total = await self._page(s, stmt, limit, offset)
            return Page(
                items=[await self._dataset_entity(s, r) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
            )

    async def get_dataset(self, actor: Principal, name: str) -> Dataset:
        async with self.db.sessions() as s:
            row = await self._dataset_row(s, name)
            actor.require(Role.VIEWER, row.team)
            return await self._dataset_entity(s, row)

    async def check_can_add_dataset_version(self, actor: Principal, name: str) -> str:
        """Fail fast if the caller may not add versions to dataset ``name``; the dataset's team."""
        async with self.db.sessions() as s:
            team = (await self._dataset_row(s, name)).team
            actor.require(Role.SCIENTIST, team)
            return team

    async def create_dataset_version(
        self,
        actor: Principal,
        name: str,
        meta: DatasetVersionMetadata,
        *,
        content_hash: str,
        uri: str | None,
        size_bytes: int | None,
    ) -> tuple[DatasetVersion, bool]:
        """A new version, or the existing one with the same content (returns ``created=False``)."""
        async with self.db.transaction() as s:
            ds = await self._dataset_row(s, name)
            actor.require(Role.SCIENTIST, ds.team)
            same = await s.scalar(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset_id == ds.id, DatasetVersionRow.content_hash == content_hash
                )
            )
            if same is not None:
                return _dataset_version_entity(same, name), False
            if meta.parent_version is not None:
                await self._dataset_version_row(s, name, meta.parent_version)
            current = await s.scalar(
                select(func.max(DatasetVersionRow.version)).where(DatasetVersionRow.dataset_id == ds.id)
            )
            row = DatasetVersionRow(
                dataset_id=ds.id,
                version=(current or 0) + 1,
                content_hash=content_hash,
                uri=uri,
                format=meta.format,
                size_bytes=size_bytes,
                row_count=meta.row_count,
                schema_=meta.schema_,
                parent_version=meta.parent_version if meta.parent_version is not None else current,
                description=meta.description,
                created_at=_now(),
                created_by=actor.subject,
            )
            s.add(row)
            await s.flush()
            users = (
                await s.scalars(
                    select(ModelRow.name)
                    .join(VersionRow, VersionRow.model_id == ModelRow.id)
                    .join(DatasetVersionRow, VersionRow.dataset_version_id == DatasetVersionRow.id)
                    .where(DatasetVersionRow.dataset_id == ds.id)
                    .distinct()
                )
            ).all()
            event = make_event(
                Topic.DATASET_UPDATED,
                DatasetUpdated(
                    dataset=name,
                    version=row.version,
                    content_hash=content_hash,
                    uri=uri,
                    row_count=meta.row_count,
                    models=sorted(users),
                ),
                source=SOURCE,
                subject=name,
            )
            await enqueue(s, MESSAGING.outbox, Topic.DATASET_UPDATED, event)
            await self._audit(
                s,
                actor,
                "dataset.version.create",
                f"datasets/{name}/versions/{row.version}",
                content_hash=content_hash,
                event_id=event.id,
            )
            entity = _dataset_version_entity(row, name)
        self._on_commit()
        return entity, True

    async def list_dataset_versions(
        self, actor: Principal, name: str, *, limit: int = 50, offset: int = 0
    ) -> Page[DatasetVersion]:
        async with self.db.sessions() as s:
            ds = await self._dataset_row(s, name)
            actor.require(Role.VIEWER, ds.team)
            stmt = (
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset_id == ds.id)
                .order_by(DatasetVersionRow.version.desc())
            )
            rows, total = await self._page(s, stmt, limit, offset)
            return Page(
                items=[_dataset_version_entity(r, name) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
            )

    async def get_dataset_version(self, actor: Principal, name: str, version: int) -> DatasetVersion:
        async with self.db.sessions() as s:
            ds = await self._dataset_row(s, name)
            actor.require(Role.VIEWER, ds.team)
            return _dataset_version_entity(await self._dataset_version_row(s, name, version), name)

    # ------------------------------------------------------------------ audit and tokens

    async def add_audit_entry(self, entry: AuditRecorded, *, event_id: str | None = None) -> bool:
        """Add another service's audit entry (or the registry's own refusal) to the platform's log;
        idempotent on ``event_id``. False when the event was already recorded."""
        async with self.db.transaction() as s:
            if event_id is not None and not await claim(
                s,
                MESSAGING.inbox,
                event_id=event_id,
                consumer=AUDIT_CONSUMER,
                topic=Topic.AUDIT_RECORDED.value,
            ):
                return False
            s.add(
                AuditRow(
                    at=entry.at,
                    actor=entry.actor[:200],
                    role=(entry.role or "-")[:20],
                    action=entry.action[:100],
                    resource=entry.resource[:400],
                    detail={"status": entry.status, **entry.detail},
                    request_id=entry.request_id,
                    outcome=entry.outcome,
                    service=entry.service[:40],
                )
            )
            return True

    async def list_audit(
        self,
        actor: Principal,
        *,
        actor_filter: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        service: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[AuditEntry]:
        if not actor.is_admin:
            raise Forbidden("only admins may read the audit log")
        stmt = select(AuditRow).order_by(AuditRow.id.desc())
        if service:
            stmt = stmt.where(AuditRow.service == service)
        if outcome:
            stmt = stmt.where(AuditRow.outcome == outcome)
        if actor_filter:
            stmt = stmt.where(AuditRow.actor == actor_filter)
        if action:
            stmt = stmt.where(or_(AuditRow.action == action, AuditRow.action.startswith(action + ".")))
        if resource:
            stmt = stmt.where(AuditRow.resource.startswith(resource, autoescape=True))
        async with self.db.sessions() as s:
            rows, total = await self._page(s, stmt, limit, offset)
            return Page(
                items=[AuditEntry.model_validate(r, from_attributes=True) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
            )

    async def record_token(self, actor: Principal, token: IssuedToken) -> None:
        if not actor.is_admin:
            raise Forbidden("only admins may issue tokens")
        async with self.db.transaction() as s:
            s.add(TokenRow(**token.model_dump()))
            await self._audit(
                s,
                actor,
                "token.issue",
                f"tokens/{token.token_id}",
                subject=token.subject,
                role=token.role,
                teams=token.teams,
            )

    async def revoke_token(self, actor: Principal, token_id: str) -> IssuedToken:
        """Mark a recorded token revoked (idempotent: revoking twice keeps the first time)."""
        if not actor.is_admin:
            raise Forbidden("only admins may revoke tokens")
        async with self.db.transaction() as s:
            row = await s.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"no recorded token with id '{token_id}'", field="token_id")
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = _now(), actor.subject
                await self._audit(s, actor, "token.revoke", f"tokens/{token_id}", subject=row.subject)
            return IssuedToken.model_validate(row, from_attributes=True)

    async def revoked_token_ids(self) -> set[str]:
        """Ids of revoked tokens that have not expired yet (an expired token is refused anyway)."""
        async with self.db.sessions() as s:
            rows = await s.scalars(
                select(TokenRow.token_id).where(
                    TokenRow.revoked_at.is_not(None),
                    or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > _now()),
                )
            )
            return set(rows.all())

    async def list_tokens(self, actor: Principal, *, limit: int = 100, offset: int = 0) -> Page[IssuedToken]:
        if not actor.is_admin:
            raise Forbidden("only admins may list tokens")
        async with self.db.sessions() as s:
            rows, total = await self._page(
                s, select(TokenRow).order_by(TokenRow.issued_at.desc()), limit, offset
            )
            return Page(
                items=[IssuedToken.model_validate(r, from_attributes=True) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
            )


def _stored_recipe(model: str, version: int, raw: dict[str, Any] | None) -> Recipe | None:
    """A stored recipe, or None when the recipe allow-list (newer than the row) refuses it: the
    version still reads, it just cannot be retrained until a version with an allowed recipe is
    registered."""
    if raw is None:
        return None
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        log.warning(
            "stored recipe refused by the allow-list; withheld", model=model, version=version, error=str(exc)
        )
        return None


def _dataset_version_entity(row: DatasetVersionRow, dataset: str) -> DatasetVersion:
    return DatasetVersion(
        dataset=dataset,
        version=row.version,
        content_hash=row.content_hash,
        uri=row.uri,
        format=row.format,
        size_bytes=row.size_bytes,
        row_count=row.row_count,
        schema=row.schema_ or {},
        parent_version=row.parent_version,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
    )
