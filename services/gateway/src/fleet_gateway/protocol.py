"""Request bodies to rows and predictions to response bodies, for both accepted forms.

- **Tensor form** (Open Inference Protocol v2): ``{"inputs": [{"name", "shape", "datatype",
  "data"}, ...]}``. Either one tensor per feature (column-wise, named after the signature's
  inputs, ``shape[0]`` rows, ``data`` flat row-major or nested), or a single 2-D tensor whose name
  is not a feature, of shape ``[rows, features]``, whose columns follow the signature's input
  order. Answered with an OIP ``InferenceResponse``.
- **Plain form**: ``{"inputs": {"feature": value, ...}}`` (one row) or ``{"inputs": [{...}, ...]}``.
  Answered with ``{"model", "version", "predictions", "request_id"}``.

A list of objects that all carry ``datatype`` and ``data`` is the tensor form; any other list
of objects is rows. Errors name the field (``inputs.age``, ``inputs[1].age``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from fleet_core.errors import FleetError, InvalidInput, MalformedRequest
from fleet_core.oip import InferenceRequest, Parameters, RequestInput, RequestOutput, datatype_of
from fleet_core.schemas import Signature

Form = Literal["oip", "plain"]


class MalformedJson(FleetError):
    status, kind, title = 400, "malformed-json", "Malformed JSON"


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A decoded inference body: its form, the client's id, and rows or tensors."""

    form: Form
    client_id: str | None
    rows: list[dict[str, Any]] | None = None
    tensors: list[RequestInput] | None = None
    parameters: Parameters | None = None
    """The tensor form's request-level parameters (``binary_data_output``) and requested outputs."""
    outputs: list[RequestOutput] | None = None


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


def decode_request(body: bytes) -> ParsedRequest:
    """Parse the body (400 when it is not JSON, 422 when it is neither accepted form)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"the request body is not valid JSON: {exc}") from exc
    return decode_payload(payload)


def decode_payload(payload: Any) -> ParsedRequest:
    """A parsed JSON body (or the JSON header of a binary one, its tensors' ``data`` filled in)."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise _invalid("inputs", "is required: an object of feature values, a list of them, or tensors")
    inputs = payload["inputs"]
    client_id = payload.get("id")
    if client_id is not None and not isinstance(client_id, str):
        raise _invalid("id", "must be a string")
    if isinstance(inputs, dict):
        return ParsedRequest("plain", client_id, rows=[inputs])
    if not isinstance(inputs, list) or not inputs:
        raise _invalid("inputs", "must be an object, or a non-empty list of objects or tensors")
    if not all(isinstance(item, dict) for item in inputs):
        raise _invalid("inputs", "every item must be an object (a row, or a tensor)")
    if all("datatype" in item and "data" in item for item in inputs):
        try:
            request = InferenceRequest.model_validate(payload)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(_loc(e["loc"])), "message": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            first = errors[0]
            detail = f"{first['field']}: {first['message']}"
            raise InvalidInput(detail, field=first["field"], errors=errors) from None
        return ParsedRequest(
            "oip", request.id, tensors=request.inputs, parameters=request.parameters, outputs=request.outputs
        )
    if "datatype" in inputs[0] and any(_is_binary_tensor(item) for item in inputs):
        raise MalformedRequest(
            "Inference-Header-Content-Length: is required when inputs carry parameters.binary_data_size",
            field="Inference-Header-Content-Length",
        )
    extra = set(payload) - {"inputs", "id", "parameters"}
    if extra:
        name = sorted(extra)[0]
        raise _invalid(name, "is not a field of the plain request form")
    return ParsedRequest("plain", client_id, rows=inputs)


def _is_binary_tensor(item: dict[str, Any]) -> bool:
    parameters = item.get("parameters")
    return "datatype" in item and isinstance(parameters, dict) and "binary_data_size" in parameters


def _loc(loc: tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for part in loc:
        if isinstance(part, int) and out:
            out[-1] = f"{out[-1]}[{part}]"
        else:
            out.append(str(part))
    return out


def rows_for(parsed: ParsedRequest, signature: Signature, *, max_rows: int) -> list[dict[str, Any]]:
    """The request as rows of feature values, in the signature's terms.

    A tensor's ``shape`` is only a claim: it is checked against ``max_rows``, the signature's
    dimensions and the data actually sent before anything the size of that claim is built."""
    if parsed.rows is not None:
        return parsed.rows
    tensors = parsed.tensors or []
    specs = {f.name: f for f in signature.inputs}
    if len(tensors) == 1 and tensors[0].name not in specs:
        return _rows_from_matrix(tensors[0], signature, max_rows)
    columns: dict[str, list[Any]] = {}
    count: int | None = None
    for tensor in tensors:
        where = f"inputs.{tensor.name}"
        spec = specs.get(tensor.name)
        if spec is None:
            raise _invalid(where, "is not in the model's signature")
        if tensor.name in columns:
            raise _invalid(where, "appears twice")
        values = _batch(tensor, where, max_dims=1 + len(spec.shape or []), max_rows=max_rows)
        if count is not None and len(values) != count:
            raise _invalid(where, f"has {len(values)} rows; the other inputs have {count}")
        count = len(values)
        columns[tensor.name] = values
    return [{name: values[i] for name, values in columns.items()} for i in range(count or 0)]


def _rows_from_matrix(tensor: RequestInput, signature: Signature, max_rows: int) -> list[dict[str, Any]]:
    where = f"inputs.{tensor.name}"
    names = [f.name for f in signature.inputs]
    _check_shape(tensor.shape, where, max_dims=2, max_rows=max_rows, sent=len(tensor.data))
    if any(f.shape for f in signature.inputs):
        raise _invalid(where, f"is not an input of the model; expected tensors named {names}")
    width = len(names)
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise _invalid(
            where,
            f"is not an input of the model: send one tensor per input {names}, or one tensor of "
            f"shape [rows, {width}] with columns in that order",
        )
    matrix = _batch(tensor, where, max_dims=2, max_rows=max_rows)
    return [dict(zip(names, row, strict=True)) for row in matrix]


def _batch(tensor: RequestInput, where: str, *, max_dims: int, max_rows: int) -> list[Any]:
    """The tensor's values split along its first dimension (flat or nested data alike)."""
    shape = tensor.shape
    data = tensor.data
    _check_shape(shape, where, max_dims=max_dims, max_rows=max_rows, sent=len(data))
    if not shape:
        if len(data) != 1:
            raise _invalid(where, f"a scalar tensor holds one value, got {len(data)}")
        return data
    if data and isinstance(data[0], list):
        if len(data) != shape[0]:
            raise _invalid(where, f"has {len(data)} rows; its shape {shape} says {shape[0]}")
        _check_nesting(data, shape, f"{where}.data")
        return data
    expected = math.prod(shape)
    if len(data) != expected:
        raise _invalid(where, f"has {len(data)} values; its shape {shape} needs {expected}")
    if any(isinstance(v, list) for v in data):
        raise _invalid(f"{where}.data", f"mixes nested lists and values; its shape is {shape}")
    return _nest(data, shape)


def _check_shape(shape: list[int], where: str, *, max_dims: int, max_rows: int, sent: int) -> None:
    """Refuse a shape that claims more than the request may carry, before anything is built.

    Besides rows and dimensions, every leading part of the shape must multiply to no more than
    the values sent (or ``max_rows``): ``[n, 0]`` carries no values but would still build ``n``
    empty rows, and ``[1, n, 0]`` ``n`` empty lists."""
    field = f"{where}.shape"
    if len(shape) > max_dims:
        raise _invalid(field, f"has {len(shape)} dimensions; this input takes at most {max_dims}")
    if shape and shape[0] > max_rows:
        raise _invalid(field, f"claims {shape[0]} rows; the limit is {max_rows} per request")
    bound = max(sent, max_rows)
    built = 1
    for size in shape[:-1]:
        built *= size
        if built > bound:
            raise _invalid(field, f"{shape} describes more sub-arrays than the {sent} values sent")


def _check_nesting(
    data: list[Any], shape: list[int], where: str, *, position: str = "", top: list[int] | None = None
) -> None:
    """Nested data must follow its shape exactly: each level its length, values at the bottom.

    Recursion depth is the number of dimensions, which ``_check_shape`` has bounded."""
    inner = shape[1:]
    for i, item in enumerate(data):
        at = f"{position}[{i}]"
        if not inner:
            if isinstance(item, list):
                raise _invalid(where, f"item {at} is nested deeper than the shape {top or shape}")
            continue
        if not isinstance(item, list) or len(item) != inner[0]:
            raise _invalid(where, f"item {at} does not follow the shape {top or shape}")
        _check_nesting(item, inner, where, position=at, top=top or shape)


def _nest(flat: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


# --------------------------------------------------------------------------- responses


def _flatten(values: list[Any]) -> tuple[list[Any], list[int]]:
    """Flat data and the shape of one item, when every item has the same nested shape."""
    first = values[0] if values else None
    if not isinstance(first, list):
        return values, []
    inner_len = len(first)
    if not all(isinstance(v, list) and len(v) == inner_len for v in values):
        return values, []
    flat, inner = _flatten([x for v in values for x in v])
    return flat, [inner_len, *inner]


def requested_outputs(parsed: ParsedRequest) -> list[str] | None:
    """The output names a tensor-form request asks for (``outputs``), or None for all of them."""
    return [o.name for o in parsed.outputs] if parsed.outputs else None


def check_requested_outputs(parsed: ParsedRequest, signature: Signature) -> None:
    """Refuse, before predicting, an asked-for output the signature does not declare (a model
    with no declared outputs is checked against what it answers, in ``output_tensors``)."""
    wanted, declared = requested_outputs(parsed), [f.name for f in signature.outputs]
    if wanted and declared:
        _require_known(wanted, declared)


def _require_known(wanted: list[str], known: list[str]) -> None:
    for i, name in enumerate(wanted):
        if name not in known:
            raise _invalid(f"outputs[{i}].name", f"'{name[:80]}' is not an output of this model: {known}")
        if name in wanted[:i]:
            raise _invalid(f"outputs[{i}].name", f"'{name[:80]}' is asked for twice")


def output_tensors(
    predictions: list[Any], signature: Signature, requested: list[str] | None = None
) -> list[dict[str, Any]]:
    """Predictions (one per row) as OIP output tensors, named after the signature's outputs; only
    the ``requested`` ones, in that order, when the request named some."""
    n = len(predictions)
    out_names = [f.name for f in signature.outputs]
    if predictions and all(isinstance(p, dict) for p in predictions):
        keys = out_names or sorted({k for p in predictions for k in p})
        columns = {k: [p.get(k) for p in predictions] for k in keys}
    else:
        columns = {out_names[0] if len(out_names) == 1 else "predictions": predictions}
    if requested:
        _require_known(requested, list(columns))
        columns = {name: columns[name] for name in requested}
    tensors = []
    for name, values in columns.items():
        flat, inner = _flatten(values)
        tensors.append({"name": name, "shape": [n, *inner], "datatype": datatype_of(flat), "data": flat})
    return tensors


def oip_response_body(
    *,
    model: str,
    version: int,
    request_id: str | None,
    predictions: list[Any],
    signature: Signature,
    requested: list[str] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "model_name": model,
            "model_version": str(version),
            "id": request_id,
            "outputs": output_tensors(predictions, signature, requested),
        }
    )


def plain_response_body(*, model: str, version: int, request_id: str | None, predictions: list[Any]) -> bytes:
    return orjson.dumps(
        {"model": model, "version": version, "predictions": predictions, "request_id": request_id}
    )
