"""Open Inference Protocol gRPC messages to the gateway's requests and back.

A ``ModelInferRequest`` becomes the same ``ParsedRequest`` (tensor form) that an HTTP body
becomes in ``fleet_gateway.protocol``, so shapes, rows and validation against the signature are
the data plane's, identical for both transports. Tensor values arrive either as
``raw_input_contents`` (one little-endian byte string per input, what ``tritonclient.grpc``
sends) or typed in each input's ``contents``; raw bytes are decoded by ``fleet_core.tensor_bytes``,
as Triton's binary HTTP extension is. Outputs go back as ``raw_output_contents``, which Triton's
and KServe's clients read.

Errors are ``InvalidInput`` naming the field (``inputs.age``, ``inputs.age.datatype``,
``raw_input_contents``), as over HTTP.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import Any

import orjson

from fleet_core.errors import InvalidInput
from fleet_core.oip import MetadataModelResponse, RequestInput, RequestOutput
from fleet_core.tensor_bytes import NUMPY_DTYPES, decode_tensor_bytes, encode_tensor_bytes
from fleet_gateway.dataplane import Prediction
from fleet_gateway.grpc_gen import grpc_predict_v2_pb2 as pb
from fleet_gateway.protocol import ParsedRequest, output_tensors

DATATYPES = frozenset({*NUMPY_DTYPES, "BYTES"})

CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""Where each datatype's values travel in ``InferTensorContents`` (FP16 has no typed field: raw only)."""

# The registry's rule for model names (the HTTP routes check the same pattern on the path).
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_VERSION = 2**31 - 1


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


def model_name(name: str, field: str) -> str:
    if not MODEL_NAME.match(name):
        raise _invalid(
            field, "is not a model name (lowercase letters, digits, '.', '_' and '-', at most 100)"
        )
    return name


def model_version(version: str, field: str) -> int | None:
    """The version a request names (``""``: let the route table choose)."""
    if not version:
        return None
    if not version.isdigit() or not 1 <= int(version) <= MAX_VERSION:
        raise _invalid(field, f"'{version[:20]}' is not a version number (an integer from 1)")
    return int(version)


# --------------------------------------------------------------------------- requests


def parse_infer_request(request: pb.ModelInferRequest) -> ParsedRequest:
    """The request's tensors in the form the data plane validates (``ParsedRequest``, tensor form)."""
    inputs = request.inputs
    if not inputs:
        raise _invalid("inputs", "at least one input tensor is required")
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise _invalid(
            "raw_input_contents",
            f"has {len(raw)} entries for {len(inputs)} inputs; send one per input, in their order",
        )
    tensors: list[RequestInput] = []
    for i, tensor in enumerate(inputs):
        name = tensor.name
        if not name:
            raise _invalid(f"inputs[{i}].name", "is required")
        where = f"inputs.{name}"
        datatype = tensor.datatype
        if datatype not in DATATYPES:
            raise _invalid(
                f"{where}.datatype", f"'{datatype[:20]}' is not an Open Inference Protocol datatype"
            )
        shape = list(tensor.shape)
        if any(size < 0 for size in shape):
            raise _invalid(f"{where}.shape", f"{shape} has a negative dimension")
        if raw:
            if tensor.HasField("contents"):
                raise _invalid(f"{where}.contents", "is set although the request carries raw_input_contents")
            data = decode_tensor_bytes(datatype, shape, raw[i], where)
        else:
            data = _typed_values(tensor.contents, datatype, where)
        # Checked above as RequestInput would; rows_for checks shape against data and signature.
        tensors.append(RequestInput.model_construct(name=name, shape=shape, datatype=datatype, data=data))
    outputs = []
    for i, output in enumerate(request.outputs):
        if not output.name:
            raise _invalid(f"outputs[{i}].name", "is required")
        outputs.append(RequestOutput.model_construct(name=output.name, parameters=None))
    return ParsedRequest("oip", request.id or None, tensors=tensors, outputs=outputs or None)


def _typed_values(contents: pb.InferTensorContents, datatype: str, where: str) -> list[Any]:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise _invalid(
            f"{where}.contents", f"{datatype} has no typed contents; send it as raw_input_contents"
        )
    values = getattr(contents, field)
    if not values:
        others = [f.name for f, _ in contents.ListFields()]
        if others:
            raise _invalid(
                f"{where}.contents", f"a {datatype} tensor carries its values in {field}, not {others[0]}"
            )
        return []
    if datatype == "BYTES":
        return [_text_or_bytes(v) for v in values]
    return list(values)


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


# --------------------------------------------------------------------------- responses


def infer_response(
    result: Prediction, response_id: str, requested: list[str] | None = None
) -> pb.ModelInferResponse:
    """The prediction as output tensors with raw contents, named after the signature's outputs
    (only the ``requested`` ones when the request named some)."""
    response = pb.ModelInferResponse(
        model_name=result.model, model_version=str(result.version), id=response_id
    )
    for tensor in output_tensors(result.predictions, result.served.spec.signature, requested):
        datatype, raw = _encode(tensor["datatype"], tensor["data"])
        response.outputs.add(name=tensor["name"], datatype=datatype, shape=tensor["shape"])
        response.raw_output_contents.append(raw)
    return response


def _encode(datatype: str, values: list[Any]) -> tuple[str, bytes]:
    """Values as raw bytes of their datatype; what does not fit it (a ``None`` among integers,
    nested rows of uneven length) travels as BYTES, each element as JSON unless it is text."""
    if datatype != "BYTES":
        # Values that do not fit their fixed-size type fall through to the BYTES form below.
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            return datatype, encode_tensor_bytes(datatype, values)
    return "BYTES", encode_tensor_bytes("BYTES", [_element(v) for v in values])


def _element(value: Any) -> str | bytes:
    if isinstance(value, str | bytes):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def metadata_response(meta: MetadataModelResponse) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=meta.versions,
        platform=meta.platform,
        inputs=_tensor_metadata(meta.inputs),
        outputs=_tensor_metadata(meta.outputs),
    )


def _tensor_metadata(tensors: Iterable[Any]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
        for t in tensors
    ]
