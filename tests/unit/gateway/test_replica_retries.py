"""The gateway's Ray backend sends a call again when its replica died, and only then.

The handle is scripted (each call raises or returns what the script says) and the errors are Ray's
and Serve's own exception types, as a real handle raises them; the two-node integration test
(tests/integration/serving/test_pool_node_loss.py) kills a node under real traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from ray import exceptions as ray_exc
from ray.serve import exceptions as serve_exc

from fleet_core.errors import InvalidInput
from fleet_core.schemas import FieldSpec, Signature
from fleet_core.serving import ModelSpec, Placement, ServedVersion
from fleet_gateway.backend import ModelFailed, ModelUnavailable, RayBackend, replica_lost

ROWS = [{"x": 1.0}]


def served() -> ServedVersion:
    spec = ModelSpec(
        model="iris",
        version=1,
        team="t",
        flavor="sklearn",
        artifact_uri="file:///nowhere/model.skops",
        sha256="0" * 64,
        size_bytes=1,
        signature=Signature(inputs=[FieldSpec(name="x", type="float")], outputs=[]),
    )
    return ServedVersion(spec=spec, placement=Placement.pool(), state="ready")


def died() -> Exception:
    return ray_exc.ActorDiedError()


def unavailable() -> Exception:
    return ray_exc.ActorUnavailableError("connection refused", None)


def grpc_error(code: grpc.StatusCode) -> Exception:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="peer gone")


def model_error() -> Exception:
    cause = InvalidInput("x out of range", field="inputs.x")
    return ray_exc.RayTaskError("predict", "Traceback ...", cause).as_instanceof_cause()


class After:
    """An outcome that fails with ``exc`` after ``delay_s``."""

    def __init__(self, delay_s: float, exc: Exception) -> None:
        self.delay_s, self.exc = delay_s, exc


class ScriptedHandle:
    """``handle.predict.remote(rows)``: each call takes the next outcome (an exception to raise,
    ``After`` one, a delay in seconds to hang for, or a value to return)."""

    def __init__(self, outcomes: Iterable[Any]) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.predict = self

    def remote(self, rows: list[dict[str, Any]]) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)

        async def answer() -> Any:
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, After):
                await asyncio.sleep(outcome.delay_s)
                raise outcome.exc
            if isinstance(outcome, float):
                await asyncio.sleep(outcome)
            return outcome

        return answer()


class ScriptedBackend(RayBackend):
    def __init__(self, handle: ScriptedHandle, **kw: Any) -> None:
        self.retries: list[str] = []
        super().__init__(None, on_retry=self.retries.append, **kw)
        self._connected = True
        self.handle = handle

    def _handle(self, served: ServedVersion) -> Any:
        return self.handle


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (died(), "ActorDiedError"),
        (unavailable(), "ActorUnavailableError"),
        (serve_exc.ReplicaUnavailableError("abc"), "ReplicaUnavailableError"),
        (grpc_error(grpc.StatusCode.UNAVAILABLE), "grpc-unavailable"),
        (grpc_error(grpc.StatusCode.INTERNAL), None),
        (model_error(), None),
        (serve_exc.BackPressureError(num_queued_requests=10, max_queued_requests=10), None),
        (TimeoutError(), None),
        (ValueError("bad"), None),
    ],
)
def test_only_a_lost_replica_counts_as_retryable(exc: Exception, reason: str | None) -> None:
    assert replica_lost(exc) == reason


async def test_a_call_whose_replica_died_is_answered_by_the_next_try() -> None:
    handle = ScriptedHandle([died(), unavailable(), [1]])
    backend = ScriptedBackend(handle)
    assert await backend.predict(served(), ROWS) == [1]
    assert handle.calls == 3
    assert backend.retries == ["ActorDiedError", "ActorUnavailableError"]


async def test_retries_are_bounded_and_the_last_failure_is_a_503() -> None:
    handle = ScriptedHandle([died(), died(), died(), [1]])
    backend = ScriptedBackend(handle, max_retries=2)
    with pytest.raises(ModelUnavailable):
        await backend.predict(served(), ROWS)
    assert handle.calls == 3
    assert len(backend.retries) == 2


async def test_a_model_error_is_never_retried() -> None:
    handle = ScriptedHandle([model_error(), [1]])
    backend = ScriptedBackend(handle)
    with pytest.raises(InvalidInput):
        await backend.predict(served(), ROWS)
    assert handle.calls == 1
    assert backend.retries == []


async def test_an_unknown_failure_is_a_502_without_retry() -> None:
    handle = ScriptedHandle([ValueError("boom"), [1]])
    backend = ScriptedBackend(handle)
    with pytest.raises(ModelFailed):
        await backend.predict(served(), ROWS)
    assert handle.calls == 1


async def test_a_replica_that_is_slow_is_not_retried() -> None:
    handle = ScriptedHandle([5.0, [1]])
    backend = ScriptedBackend(handle, timeout_s=0.2)
    with pytest.raises(ModelUnavailable, match="did not answer within"):
        await backend.predict(served(), ROWS)
    assert handle.calls == 1


async def test_no_retry_starts_past_the_request_deadline() -> None:
    # The first try fails after most of the deadline: the pause before a retry would overrun it.
    handle = ScriptedHandle([After(0.15, died()), [1]])
    backend = ScriptedBackend(handle, timeout_s=0.18)
    with pytest.raises(ModelUnavailable, match="replica unavailable"):
        await backend.predict(served(), ROWS)
    assert handle.calls == 1
    assert backend.retries == []
