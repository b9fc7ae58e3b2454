"""The gateway's data plane: route, authorise, validate, predict, mirror to shadows, log.

The REST layer only translates HTTP to calls on ``DataPlane`` and results back; the data plane
knows neither HTTP nor Ray (the backend is a ``ServingBackend``). Every failure is a typed
``FleetError`` rendered as problem+json by the shared handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet_core.auth import Principal
from fleet_core.errors import FleetError, Forbidden, InvalidInput, NotFound
from fleet_core.log import get_logger
from fleet_core.oip import MetadataModelResponse, metadata_tensor
from fleet_core.schemas import Signature
from fleet_core.serving import ServedVersion
from fleet_core.validation import validate_rows
from fleet_gateway.backend import ModelFailed, ServingBackend
from fleet_gateway.inference_log import InferenceLogSink, LogRecord
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.protocol import ParsedRequest, check_requested_outputs, rows_for
from fleet_gateway.routing import NoRoute, RouteBook, RouteDecision
from fleet_gateway.served import FeedbackReceipts, ServedRequest, ServedRequests

log = get_logger(__name__)

VERSION_HEADER = "X-Fleet-Model-Version"

Lookup = Callable[[str], Awaitable[bool]]
"""Look one model's route up now (it is not in the book, or lacks a version); True when found."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the REST layer needs to answer one inference request."""

    served: ServedVersion
    predictions: list[Any]
    receipt: str | None = None
    """Proof for ``/v1/feedback`` that this request was answered (``FeedbackReceipts``)."""

    @property
    def model(self) -> str:
        return self.served.spec.model

    @property
    def version(self) -> int:
        return self.served.spec.version


async def _no_lookup(model: str) -> bool:
    return False


class DataPlane:
    """One inference request end to end, minus HTTP."""

    def __init__(
        self,
        book: RouteBook,
        backend: ServingBackend,
        logs: InferenceLogSink,
        metrics: GatewayMetrics,
        *,
        lookup: Lookup = _no_lookup,
        max_rows: int = 10_000,
        shadow_timeout_s: float = 10.0,
        served_requests: ServedRequests | None = None,
        receipts: FeedbackReceipts | None = None,
    ) -> None:
        self.book = book
        self.backend = backend
        self.logs = logs
        self.metrics = metrics
        self._lookup = lookup
        self._max_rows = max_rows
        self._shadow_timeout_s = shadow_timeout_s
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.served_requests = served_requests or ServedRequests(per_model=20_000, window_s=86_400)
        self.receipts = receipts

    # ------------------------------------------------------------------ lookups

    async def _team(self, model: str) -> str:
        if not self.book.knows(model):
            await self._lookup(model)
        try:
            return self.book.team(model)
        except NoRoute as exc:
            raise NotFound(str(exc), field="model") from exc

    async def _served(self, model: str, version: int) -> ServedVersion:
        served = self.book.served(model, version)
        if served is None:
            await self._lookup(model)
            served = self.book.served(model, version)
        if served is None:
            raise NotFound(f"version {version} of model '{model}' is not being served", field="version")
        return served

    async def authorise(self, principal: Principal, model: str) -> None:
        team = await self._team(model)
        if not principal.in_team(team):
            raise Forbidden(f"'{principal.subject}' may not call models of team '{team}'", field="team")

    # ------------------------------------------------------------------ inference

    async def infer(
        self,
        principal: Principal,
        model: str,
        parsed: ParsedRequest,
        *,
        version: int | None,
        routing_key: str | None,
        request_id: str,
    ) -> Prediction:
        await self.authorise(principal, model)
        if version is None:
            try:
                decision = self.book.route_for(model, routing_key)
            except NoRoute as exc:
                raise NotFound(str(exc), field="model") from exc
        else:
            decision = self.book.route_to_version(model, version)
        served = await self._served(model, decision.version)
        arm = "primary"
        started = time.perf_counter()
        version_header = {VERSION_HEADER: str(served.spec.version)}
        try:
            rows = rows_for(parsed, served.spec.signature, max_rows=self._max_rows)
            check_requested_outputs(parsed, served.spec.signature)
            self._check_rows(rows, served)
        except FleetError as exc:
            exc.headers = {**(exc.headers or {}), **version_header}
            self.metrics.observe(model, served.spec.version, arm, exc.status, time.perf_counter() - started)
            raise
        caller = principal.subject
        try:
            predictions = await self.backend.predict(served, rows)
            if not isinstance(predictions, list) or len(predictions) != len(rows):
                got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
                raise ModelFailed(f"{served.spec.key} answered {got} predictions for {len(rows)} rows")
        except Exception as exc:
            error = exc if isinstance(exc, FleetError) else ModelFailed(f"{type(exc).__name__}: {exc}")
            error.headers = {**(error.headers or {}), **version_header}
            elapsed = time.perf_counter() - started
            self.metrics.observe(model, served.spec.version, arm, error.status, elapsed)
            log.warning(
                "prediction failed",
                model=model,
                version=served.spec.version,
                status=error.status,
                error=error.detail,
            )
            self._log(
                request_id, served, arm, rows, None, elapsed, error.status, error.detail, caller, routing_key
            )
            self._mirror(decision, rows, request_id, caller, routing_key)
            raise error from exc
        elapsed = time.perf_counter() - started
        self.metrics.observe(model, served.spec.version, arm, 200, elapsed)
        self._log(request_id, served, arm, rows, predictions, elapsed, 200, None, caller, routing_key)
        self._mirror(decision, rows, request_id, caller, routing_key)
        self.served_requests.remember(model, request_id, version=served.spec.version, rows=len(rows))
        receipt = (
            self.receipts.issue(model, request_id, version=served.spec.version, rows=len(rows))
            if self.receipts is not None and request_id
            else None
        )
        return Prediction(served, predictions, receipt)

    def _check_rows(self, rows: list[dict[str, Any]], served: ServedVersion) -> None:
        if not rows:
            raise InvalidInput("inputs: at least one row is required", field="inputs")
        if len(rows) > self._max_rows:
            raise InvalidInput(
                f"inputs: {len(rows)} rows exceed the limit of {self._max_rows} per request", field="inputs"
            )
        problems = validate_rows(served.spec.signature, rows)
        if problems:
            first = problems[0]
            raise InvalidInput(
                f"{first.field}: {first.message}",
                field=first.field,
                errors=[p.as_dict() for p in problems],
            )

    def _log(
        self,
        request_id: str,
        served: ServedVersion,
        arm: str,
        rows: list[dict[str, Any]],
        outputs: list[Any] | None,
        elapsed_s: float,
        status_code: int,
        error: str | None,
        caller: str | None,
        routing_key: str | None,
    ) -> None:
        spec = served.spec
        pii = _pii_fields(spec.signature)
        self.logs.submit(
            LogRecord(
                request_id=request_id,
                model=spec.model,
                version=spec.version,
                arm=arm,
                rows=rows,
                outputs=outputs,
                latency_ms=elapsed_s * 1000,
                status="ok" if status_code < 400 else "error",
                status_code=status_code,
                timestamp=datetime.now(UTC),
                pii=pii,
                error=error,
                caller=caller,
                routing_key=routing_key,
            )
        )

    # ------------------------------------------------------------------ feedback

    async def feedback_target(
        self,
        principal: Principal,
        model: str,
        request_id: str,
        *,
        labels: int,
        version: int | None,
        receipt: str | None = None,
    ) -> ServedRequest:
        """The request that feedback labels: one a gateway answered for ``model`` (vouched for by
        its receipt, or remembered by this process), labelled by a member of the model's team, with
        one label per row it had."""
        served = await self.served_target(principal, model, request_id, version=version, receipt=receipt)
        if labels != served.rows:
            raise InvalidInput(
                f"labels: request '{request_id}' had {served.rows} row(s); send one label per row, "
                f"got {labels}",
                field="labels",
            )
        return served

    async def served_target(
        self,
        principal: Principal,
        model: str,
        request_id: str,
        *,
        version: int | None,
        receipt: str | None = None,
    ) -> ServedRequest:
        """A request a gateway answered for ``model`` (its receipt, or this process's memory), for
        a member of the model's team: what feedback and outcomes may name."""
        # The team check comes first, so an outsider learns nothing about which ids exist.
        await self.authorise(principal, model)
        if receipt is not None:
            vouched = self.receipts.verify(receipt, model, request_id) if self.receipts else None
            if vouched is None:
                raise InvalidInput(
                    f"receipt: not a valid, current receipt for request '{request_id}' of model '{model}'",
                    field="receipt",
                )
            served: ServedRequest | None = vouched
        else:
            served = self.served_requests.get(model, request_id)
        if served is None:
            raise NotFound(
                f"model '{model}' has not answered request '{request_id}' on this gateway recently "
                "(only successful predictions of the feedback window are remembered)",
                field="request_id",
            )
        if version is not None and version != served.version:
            raise InvalidInput(
                f"version: request '{request_id}' was answered by version {served.version}, not {version}",
                field="version",
            )
        return served

    # ------------------------------------------------------------------ shadows

    def _mirror(
        self,
        decision: RouteDecision,
        rows: list[dict[str, Any]],
        request_id: str,
        caller: str | None,
        routing_key: str | None,
    ) -> None:
        for arm in decision.shadows:
            if arm.version == decision.version:
                continue
            served = self.book.served(decision.model, arm.version)
            if served is None:
                continue
            task = asyncio.create_task(self._shadow(served, rows, request_id, caller, routing_key))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        served: ServedVersion,
        rows: list[dict[str, Any]],
        request_id: str,
        caller: str | None,
        routing_key: str | None,
    ) -> None:
        """A copy of the request to a shadow arm; whatever happens here stays here."""
        spec = served.spec
        started = time.perf_counter()
        outputs: list[Any] | None = None
        error: str | None = None
        status = 200
        try:
            problems = validate_rows(spec.signature, rows)
            if problems:
                status, error = 422, f"{problems[0].field}: {problems[0].message}"
            else:
                async with asyncio.timeout(self._shadow_timeout_s):
                    outputs = await self.backend.predict(served, rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = exc.status if isinstance(exc, FleetError) else 502
            error = exc.detail if isinstance(exc, FleetError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TimeoutError):
                status, error = 504, f"shadow call timed out after {self._shadow_timeout_s:g} s"
        elapsed = time.perf_counter() - started
        self.metrics.observe(spec.model, spec.version, "shadow", status, elapsed)
        self._log(request_id, served, "shadow", rows, outputs, elapsed, status, error, caller, routing_key)

    async def drain_shadows(self, timeout_s: float = 5.0) -> None:
        """Wait for in-flight shadow calls (shutdown, tests)."""
        if self._shadow_tasks:
            await asyncio.wait(list(self._shadow_tasks), timeout=timeout_s)

    # ------------------------------------------------------------------ metadata

    async def metadata(self, principal: Principal, model: str, version: int | None) -> MetadataModelResponse:
        await self.authorise(principal, model)
        versions = self.book.served_versions(model)
        if version is None:
            served = self._default_version(model, versions)
        else:
            served = await self._served(model, version)
        spec = served.spec
        return MetadataModelResponse(
            name=model,
            versions=[str(v.spec.version) for v in versions],
            platform=f"fleet-{spec.flavor}",
            inputs=[metadata_tensor(f) for f in spec.signature.inputs],
            outputs=[metadata_tensor(f) for f in spec.signature.outputs],
            parameters={
                "version": spec.version,
                "team": spec.team,
                "task": spec.task,
                "routes": self._table_summary(model),
                "route_revision": table.revision if (table := self.book.table(model)) else None,
                # False while the table names a version whose serving details are still being fetched.
                "route_complete": not self.book.missing_versions(model),
            },
        )

    def _table_summary(self, model: str) -> list[dict[str, Any]]:
        table = self.book.table(model)
        return [a.model_dump(exclude_none=True) for a in table.arms] if table else []

    def _default_version(self, model: str, versions: list[ServedVersion]) -> ServedVersion:
        """The version that takes the largest share of primary traffic (else the newest served)."""
        table = self.book.table(model)
        primaries = sorted(
            (a for a in (table.arms if table else []) if a.mode == "primary"), key=lambda a: -a.weight
        )
        for arm in primaries:
            served = self.book.served(model, arm.version)
            if served is not None:
                return served
        if versions:
            return versions[-1]
        raise NotFound(f"model '{model}' has no served version", field="model")

    async def model_ready(self, principal: Principal, model: str, version: int | None) -> bool:
        await self.authorise(principal, model)
        candidates = await self._ready_candidates(model, version)
        if not candidates or any(s.state != "ready" for s in candidates):
            # The book learns a version's state when its route changes; a deployment that became
            # ready since then is only seen by asking (readiness probes are rare; look-ups are
            # coalesced and bounded by the route source).
            await self._lookup(model)
            candidates = await self._ready_candidates(model, version)
        backend_ok, _ = await self.backend.ready()
        return backend_ok and bool(candidates) and all(s.state == "ready" for s in candidates)

    async def _ready_candidates(self, model: str, version: int | None) -> list[ServedVersion]:
        if version is not None:
            return [await self._served(model, version)]
        table = self.book.table(model)
        arms = [a for a in (table.arms if table else []) if a.mode == "primary" and a.weight > 0]
        return [s for a in arms if (s := self.book.served(model, a.version)) is not None]


def _pii_fields(signature: Signature) -> frozenset[str]:
    return frozenset(f.name for f in signature.inputs if f.pii)
