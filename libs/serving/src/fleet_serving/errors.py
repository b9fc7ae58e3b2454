"""Errors the serving engine raises; each is a ``FleetError`` so a caller can render it as problem+json."""

from __future__ import annotations

from typing import Any

from fleet_core.errors import Conflict, FleetError, Forbidden, InvalidInput, NotFound


def _restore(cls: type[FleetError], detail: str, field: str | None, state: dict[str, Any]) -> FleetError:
    error = cls.__new__(cls)
    FleetError.__init__(error, detail, field=field)
    error.__dict__.update(state)
    return error


class _CrossesProcesses:
    """Errors raised in a Ray replica are pickled back to the caller: rebuild them from their fields."""

    def __reduce__(self) -> tuple[Any, ...]:
        state = {k: v for k, v in self.__dict__.items() if k not in {"detail", "field"}}
        return (_restore, (type(self), self.detail, self.field, state))  # type: ignore[attr-defined]


class ArtifactIntegrityError(_CrossesProcesses, Conflict):
    """The artifact's bytes do not hash to the sha256 the version was registered with."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(
            f"artifact integrity check failed for {uri}: expected sha256 {expected}, got {actual}",
            field="sha256",
        )
        self.uri, self.expected, self.actual = uri, expected, actual


class UntrustedArtifactError(_CrossesProcesses, Forbidden):
    """The artifact would need a type or code the serving engine does not trust."""


class ModelLoadError(_CrossesProcesses, FleetError):
    """The artifact is intact but could not be turned into a runnable model."""

    status, kind, title = 500, "model-load-failed", "Model could not be loaded"


class UnknownModelError(_CrossesProcesses, NotFound):
    """A pool was asked for a model key it has not been configured to serve."""


class PredictionError(_CrossesProcesses, InvalidInput):
    """The model refused the rows (wrong shape or values the model cannot take)."""


class ServingControlError(_CrossesProcesses, FleetError):
    """Ray Serve did not reach the desired state (deploy failed, timed out, not connected)."""

    status, kind, title = 503, "serving-unavailable", "Serving unavailable"


class UnknownAppError(_CrossesProcesses, NotFound):
    """No Serve application has that name."""


class ModelTooLargeError(_CrossesProcesses, Conflict):
    """A version takes more memory than a pool replica's whole model budget: it is not kept
    loaded there, and needs a dedicated deployment (a quota) instead."""

    kind, title = "model-too-large", "Model too large for the shared pool"


def error_wire(exc: Exception) -> dict[str, Any]:
    """One model's failure inside a several-model call, as plain data (the gateway rebuilds it)."""
    if isinstance(exc, FleetError):
        return {"status": exc.status, "kind": exc.kind, "detail": exc.detail, "field": exc.field}
    return {"status": 500, "kind": "model-error", "detail": f"{type(exc).__name__}: {exc}", "field": None}
