"""Triton's binary tensor extension over HTTP (``binary_tensor_data``): framing in and out.

A request whose header ``Inference-Header-Content-Length`` is N carries an OIP JSON request in
the first N bytes of its body; every input whose ``parameters.binary_data_size`` is set takes
that many bytes, in the order the inputs are listed, from the bytes after the JSON, and carries
no ``data``. Once each such input's values are decoded (``fleet_core.tensor_bytes``) the request
is an ordinary tensor request, validated by ``fleet_gateway.protocol`` like any JSON one.

Outputs are answered in binary when the request asks: ``parameters.binary_data_output: true``
for every output, or ``parameters.binary_data`` on a requested output (which wins for that
output). The answer is then the JSON response header, then each binary output's bytes in the
order of ``outputs``, with ``Inference-Header-Content-Length`` and ``binary_data_size`` on each
binary output. An output whose values have no exact binary form (a null among them, an integer
beyond 64 bits, ragged lists) stays in JSON ``data``; clients read both.

Only requests that send the header, or ask for binary outputs, come here: the JSON path parses
nothing more than before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from fleet_core.errors import InvalidInput, MalformedRequest
from fleet_core.schemas import Signature
from fleet_core.tensor_bytes import decode_tensor_bytes, encode_tensor_bytes
from fleet_gateway.protocol import (
    MalformedJson,
    ParsedRequest,
    decode_payload,
    output_tensors,
    requested_outputs,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
OCTET_STREAM = "application/octet-stream"
EXTENSION = "binary_tensor_data"
"""The name ``GET /v2`` lists among its extensions (Triton's)."""
NO_FRAMING: Mapping[str, str] = MappingProxyType({})
"""The response headers of a body that is JSON only."""


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response body and, when it carries binary outputs, the length of its JSON header."""

    body: bytes
    header_length: int | None

    @property
    def media_type(self) -> str:
        return OCTET_STREAM if self.header_length is not None else "application/json"

    @property
    def headers(self) -> Mapping[str, str]:
        return {HEADER_LENGTH: str(self.header_length)} if self.header_length is not None else NO_FRAMING


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


def _malformed(field: str, message: str) -> MalformedRequest:
    return MalformedRequest(f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


# --------------------------------------------------------------------------- requests


def decode_binary_request(body: bytes, header_length: str, *, max_rows: int) -> ParsedRequest:
    """A body framed by ``Inference-Header-Content-Length`` as a parsed request.

    The framing is checked before anything is built: a header length that is not a number of
    bytes within the body, or binary sizes that do not add up to the bytes after the JSON, are
    400 naming the header or ``inputs.<name>.parameters.binary_data_size``; a size that disagrees
    with the tensor's shape and datatype, or a shape claiming more than ``max_rows`` rows, is 422
    naming the tensor."""
    length = _header_length(header_length, len(body))
    view = memoryview(body)
    try:
        payload = orjson.loads(view[:length])
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(
            f"{HEADER_LENGTH}: the first {length} bytes of the body are not a JSON request: {exc}",
            field=HEADER_LENGTH,
        ) from exc
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    consumed, last_field = length, HEADER_LENGTH
    if isinstance(inputs, list):
        for i, item in enumerate(inputs):
            parameters = item.get("parameters") if isinstance(item, dict) else None
            if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
                continue
            where = _where(item, i)
            field = f"{where}.parameters.binary_data_size"
            size = parameters["binary_data_size"]
            if type(size) is not int or size < 0:
                raise _invalid(field, f"must be a non-negative integer number of bytes, got {size!r:.40}")
            if consumed + size > len(body):
                raise _malformed(
                    field,
                    f"claims {size} bytes at offset {consumed - length} of the binary data; "
                    f"only {len(body) - consumed} remain",
                )
            if "data" in item:
                raise _invalid(f"{where}.data", "must be absent: binary_data_size carries the values")
            datatype, shape = _datatype_and_shape(item, where, max_rows)
            item["data"] = decode_tensor_bytes(datatype, shape, view[consumed : consumed + size], where)
            consumed += size
            last_field = field
    if consumed != len(body):
        carried = consumed - length
        raise _malformed(
            last_field,
            f"the inputs' binary_data_size add up to {carried} bytes, but {len(body) - length} follow "
            f"the {length}-byte JSON header",
        )
    return decode_payload(payload)


def _header_length(value: str, body_length: int) -> int:
    # ASCII digits only: this refuses a sign, spaces, an empty value and digits like "²".
    if not (value.isascii() and value.isdigit()):
        raise _malformed(HEADER_LENGTH, f"must be a non-negative integer number of bytes, got {value!r:.40}")
    length = int(value) if len(value) <= 20 else body_length + 1
    if length > body_length:
        raise _malformed(HEADER_LENGTH, f"is {value:.40} bytes, beyond the {body_length}-byte body")
    return length


def _where(item: dict[str, Any], index: int) -> str:
    name = item.get("name")
    return f"inputs.{name}" if isinstance(name, str) and name else f"inputs[{index}]"


def _datatype_and_shape(item: dict[str, Any], where: str, max_rows: int) -> tuple[str, list[int]]:
    """What the bytes are to be read as, checked far enough to read them (the full check of the
    tensor is ``InferenceRequest``'s and the signature's, afterwards)."""
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise _invalid(f"{where}.datatype", "is required to read binary data")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _invalid(f"{where}.shape", "must be a list of non-negative integers")
    if shape and shape[0] > max_rows:
        raise _invalid(f"{where}.shape", f"claims {shape[0]} rows; the limit is {max_rows} per request")
    return datatype, shape


# --------------------------------------------------------------------------- responses


def asks_binary_outputs(parsed: ParsedRequest) -> bool:
    """Whether any output is to be answered in binary (cheap: two lookups for a JSON request)."""
    if parsed.parameters and parsed.parameters.get("binary_data_output") is True:
        return True
    return any(o.parameters and o.parameters.get("binary_data") is True for o in parsed.outputs or ())


def _binary_wanted(parsed: ParsedRequest) -> tuple[bool, dict[str, bool]]:
    """The request-level choice, and the requested outputs' own choices that override it."""
    default = (parsed.parameters or {}).get("binary_data_output") is True
    per_output = {
        o.name: o.parameters["binary_data"] is True
        for o in parsed.outputs or ()
        if o.parameters and "binary_data" in o.parameters
    }
    return default, per_output


def binary_response_body(
    parsed: ParsedRequest,
    *,
    model: str,
    version: int,
    request_id: str | None,
    predictions: list[Any],
    signature: Signature,
) -> EncodedResponse:
    """The OIP response with the outputs ``parsed`` asks for in binary after its JSON header."""
    default, per_output = _binary_wanted(parsed)
    tensors = output_tensors(predictions, signature, requested_outputs(parsed))
    chunks: list[bytes] = []
    for tensor in tensors:
        if not per_output.get(tensor["name"], default):
            continue
        raw = _binary_form(tensor["datatype"], tensor["data"])
        if raw is None:
            continue
        del tensor["data"]
        tensor["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    header = orjson.dumps(
        {"model_name": model, "model_version": str(version), "id": request_id, "outputs": tensors}
    )
    if not chunks:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *chunks]), len(header))


def _binary_form(datatype: str, values: list[Any]) -> bytes | None:
    """``values`` as ``datatype``'s bytes, or None when that would not be exact (numpy would turn
    a null into NaN, and a BYTES element must be text or bytes)."""
    if datatype == "BYTES":
        if not all(isinstance(v, str | bytes) for v in values):
            return None
    elif any(v is None for v in values):
        return None
    try:
        return encode_tensor_bytes(datatype, values)
    except (OverflowError, ValueError, TypeError):
        return None
