"""Parsing JSON carried inside multipart forms, with errors that name the field."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from fleet_core.errors import InvalidInput, MalformedRequest

M = TypeVar("M", bound=BaseModel)


def parse_json_part(model: type[M], raw: str, part: str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            if e["type"] == "json_invalid":
                raise MalformedRequest(f"the '{part}' part is not valid JSON", field=part) from exc
            path = ".".join(str(p) for p in e["loc"])
            errors.append(
                {"field": f"{part}.{path}" if path else part, "message": e["msg"], "type": e["type"]}
            )
        first = errors[0]
        raise InvalidInput(
            f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        ) from exc
