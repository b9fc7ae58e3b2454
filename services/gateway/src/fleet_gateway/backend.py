"""Where predictions come from: a small ``ServingBackend`` protocol and its Ray implementation.

The gateway's request handling knows only ``predict(served, rows)``; ``RayBackend`` joins the Ray
cluster as a driver and calls deployments through cached ``DeploymentHandle``s with the calling
convention of ``fleet_core.serving`` (never the Ray HTTP proxy). Unit tests use an in-memory
backend behind the same protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from fleet_core.errors import FleetError, InvalidInput, NotFound
from fleet_core.log import get_logger
from fleet_core.placement import PoolView, pool_view, replica_directive
from fleet_core.service import keep_signal_handlers
from fleet_core.serving import SERVE_NAMESPACE, Placement, ServedVersion

log = get_logger(__name__)


class ModelFailed(FleetError):
    """The model ran and raised, or answered something that is not one prediction per row."""

    status, kind, title = 502, "model-error", "The model failed"


class ModelUnavailable(FleetError):
    """The model could not be reached in time: no replica, back-pressure, or a timeout."""

    status, kind, title = 503, "model-unavailable", "The model is unavailable"

    def __init__(self, detail: str, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kw)


class ServingBackend(Protocol):
    """Runs one version on validated rows; returns one prediction per row."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> tuple[bool, str]: ...

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]: ...


@runtime_checkable
class PoolBackend(Protocol):
    """A backend that can call one pool replica with several models' rows (``BatchingBackend``
    batches across models with it)."""

    def pool_view(self, placement: Placement) -> PoolView | None: ...

    async def predict_pool(
        self, placement: Placement, replica: str, groups: list[tuple[ServedVersion, list[dict[str, Any]]]]
    ) -> list[list[Any] | FleetError]: ...


def replica_lost(exc: BaseException) -> str | None:
    """Why a call failed because the replica (or its node) went away, or None for any other error.

    Such a call may be sent again elsewhere: predictions have no side effects, and the replica
    never answered. A model's own error, a refusal (back-pressure, no replica at all) and a
    timeout are not this: resending those would only add load or repeat the failure."""
    from ray import exceptions as ray_exc
    from ray.serve import exceptions as serve_exc

    if isinstance(exc, ray_exc.RayActorError):  # ActorDiedError, ActorUnavailableError
        return type(exc).__name__
    if isinstance(exc, serve_exc.ReplicaUnavailableError):
        return type(exc).__name__
    try:
        import grpc
    except ImportError:  # pragma: no cover - Serve installs grpcio
        return None
    # Serve's gRPC transport turns UNAVAILABLE into ActorUnavailableError; one it lets through
    # means the same: the peer process is gone.
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:
        return "grpc-unavailable"
    return None


RETRY_BACKOFF_S = 0.05


class RayBackend:
    """Ray Serve deployments called through ``DeploymentHandle``s from this driver process.

    A call that failed because its replica died is sent again, ``max_retries`` times at most and
    within the request's ``timeout_s``; the handle's router has by then dropped (or, for a node
    not yet declared dead, set aside) that replica, so the retry lands on another.
    ``on_retry(reason)`` is told of each one (the gateway counts them)."""

    def __init__(
        self,
        address: str | None,
        *,
        timeout_s: float = 30.0,
        retry_s: float = 2.0,
        max_retries: int = 2,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._max_retries = max_retries
        self._on_retry = on_retry
        self._handles: dict[tuple[str, str], Any] = {}
        self._keyed: dict[tuple[str, str, str], Any] = {}
        self._connected = False
        self._error = "not connected yet"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the cluster in the background: a gateway starts even while Ray is still coming up."""
        self._task = asyncio.create_task(self._connect_loop(), name="ray-connect")

    async def _connect_loop(self) -> None:
        import ray

        delay = self._retry_s
        while not self._connected:
            try:
                with keep_signal_handlers():
                    await asyncio.to_thread(
                        ray.init,
                        address=self._address,
                        namespace=SERVE_NAMESPACE,
                        log_to_driver=False,
                        ignore_reinit_error=True,
                    )
                self._connected = True
                self._error = ""
                log.info("joined the Ray cluster", address=self._address)
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot join the Ray cluster yet; retrying", error=self._error, retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._handles.clear()
        self._keyed.clear()

    async def ready(self) -> tuple[bool, str]:
        return self._connected, "connected" if self._connected else self._error

    def _handle(self, served: ServedVersion) -> Any:
        return self._keyed_handle(served.placement, served.spec.key)

    def _keyed_handle(self, placement: Placement, key: str) -> Any:
        """The deployment's handle with ``multiplexed_model_id=key`` (a model key, or a
        ``@replica:`` directive); every such option shares the deployment handle's router."""
        cache_key = (placement.app, placement.deployment, key)
        handle = self._keyed.get(cache_key)
        if handle is None:
            from ray import serve

            base = self._handles.get(cache_key[:2])
            if base is None:
                base = serve.get_deployment_handle(placement.deployment, app_name=placement.app)
                self._handles[cache_key[:2]] = base
            handle = self._keyed[cache_key] = base.options(multiplexed_model_id=key)
        return handle

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        if not self._connected:
            raise ModelUnavailable(f"not connected to the Ray cluster: {self._error}")
        try:
            handle = self._handle(served)
        except Exception as exc:  # the application or deployment does not exist (yet)
            raise ModelUnavailable(f"{served.spec.key}: no deployment handle: {exc}") from exc
        return await self._call(served, lambda: handle.predict.remote(rows))  # type: ignore[no-any-return]

    def pool_view(self, placement: Placement) -> PoolView | None:
        """The pool router's view in this process, once a call to that pool has created it."""
        if not self._connected or placement.kind != "pool":
            return None
        return pool_view(placement.app, placement.deployment)

    async def predict_pool(
        self, placement: Placement, replica: str, groups: list[tuple[ServedVersion, list[dict[str, Any]]]]
    ) -> list[list[Any] | FleetError]:
        """Several pool models' rows in one call to ``replica`` (``ModelPool.predict_batch``): per
        group its predictions or its own error; a failure of the call as a whole raises."""
        if not self._connected:
            raise ModelUnavailable(f"not connected to the Ray cluster: {self._error}")
        first = groups[0][0]
        try:
            handle = self._keyed_handle(placement, replica_directive(replica))
        except Exception as exc:
            raise ModelUnavailable(f"{first.spec.key}: no deployment handle: {exc}") from exc
        payload = [(served.spec.key, rows) for served, rows in groups]
        answers = await self._call(first, lambda: handle.predict_batch.remote(payload))
        out: list[list[Any] | FleetError] = []
        for (served, rows), answer in zip(groups, answers, strict=True):
            error = answer.get("error")
            predictions = answer.get("predictions")
            if error is not None:
                out.append(_rebuilt(served.spec.key, error))
            elif not isinstance(predictions, list) or len(predictions) != len(rows):
                got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
                out.append(ModelFailed(f"{served.spec.key} answered {got} predictions for {len(rows)} rows"))
            else:
                out.append(predictions)
        return out

    async def _call(self, served: ServedVersion, send: Callable[[], Any]) -> Any:
        """``send()`` within the deadline, again on another replica when this one was lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        retries = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    return await send()
            except TimeoutError as exc:
                raise ModelUnavailable(
                    f"{served.spec.key} did not answer within {self._timeout_s:g} s"
                ) from exc
            except Exception as exc:
                reason = replica_lost(exc)
                backoff = RETRY_BACKOFF_S * 4**retries
                if reason is None or retries >= self._max_retries or loop.time() + backoff >= deadline:
                    raise self._translate(served, exc) from exc
                retries += 1
                if self._on_retry is not None:
                    self._on_retry(reason)
                log.warning(
                    "replica lost; retrying on another", model=served.spec.key, reason=reason, retry=retries
                )
                # The router hears of the death from the failed call itself; a short pause lets a
                # replica that is merely unreachable be probed before the next try.
                await asyncio.sleep(backoff)

    def _translate(self, served: ServedVersion, exc: Exception) -> FleetError:
        """A Ray or serving-engine error as the gateway's answer: the client's fault (422), not
        reachable or not loaded yet (503, retry), or the model broke (502)."""
        from ray import exceptions as ray_exc
        from ray.serve import exceptions as serve_exc

        key = served.spec.key
        cause: BaseException = exc
        if isinstance(exc, ray_exc.RayTaskError) and getattr(exc, "cause", None) is not None:
            cause = exc.cause
        if isinstance(cause, FleetError):
            return model_error(key, cause)
        if isinstance(exc, serve_exc.BackPressureError | serve_exc.DeploymentUnavailableError):
            return ModelUnavailable(f"{key}: {type(exc).__name__}: {exc}")
        if isinstance(exc, ray_exc.RayActorError | ray_exc.ActorUnavailableError):
            self._forget(served)
            return ModelUnavailable(f"{key}: replica unavailable: {exc}")
        return ModelFailed(f"{key} failed: {type(cause).__name__}: {cause}")

    def _forget(self, served: ServedVersion) -> None:
        placement = served.placement
        self._handles.pop((placement.app, placement.deployment), None)
        for key in [k for k in self._keyed if k[:2] == (placement.app, placement.deployment)]:
            del self._keyed[key]  # every option of the dropped handle shares its router


def model_error(key: str, cause: BaseException) -> FleetError:
    """What the model's own exception means to the caller, wherever the model ran: it refused
    these values (422), it is not (yet) configured or loaded (503, retry), or it broke (502)."""
    if isinstance(cause, FleetError):
        detail = f"{key}: {cause.detail}"
        if isinstance(cause, InvalidInput):
            return InvalidInput(detail, field=cause.field)
        if isinstance(cause, NotFound) or cause.status == 503:
            return ModelUnavailable(detail)
        return ModelFailed(detail)
    return ModelFailed(f"{key} failed: {type(cause).__name__}: {cause}")


def _rebuilt(key: str, error: dict[str, Any]) -> FleetError:
    """One group's error from ``ModelPool.predict_batch`` as ``_translate`` would answer it."""
    detail = f"{key}: {error.get('detail')}"
    status = error.get("status")
    if status == 422:
        return InvalidInput(detail, field=error.get("field"))
    if status in (404, 503):
        return ModelUnavailable(detail)
    return ModelFailed(detail)
