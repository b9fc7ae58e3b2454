"""Errors the SDK raises: the server's problem+json, kept whole."""

from __future__ import annotations

from typing import Any


class FleetAPIError(Exception):
    """The API answered with an error; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.field: str | None = problem.get("field")
        title = problem.get("title", "error")
        detail = problem.get("detail", "")
        super().__init__(f"{status} {title}: {detail}")


class FleetUnavailable(Exception):
    """The service could not be reached."""
