"""Open Inference Protocol (KServe v2) REST types, in one module.

Shaped after KServe's ``protocol/rest/v2_datamodels.py``: the gateway speaks these on
``/v2/...`` and the SDK may send them. Tensors carry their ``data`` either flat in row-major
order (the protocol's canonical form) or nested to their ``shape``; both are accepted.

Besides the tensor form the gateway accepts a plain JSON convenience form
(``{"inputs": {"feature": value}}`` or ``{"inputs": [{...}, {...}]}``), answered with
``PlainInferenceResponse``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet_core.schemas import FieldSpec, JsonValue

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
INTEGER_DATATYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})

Parameters = dict[str, JsonValue]


class _OipModel(BaseModel):
    # The protocol allows extension fields; keep them rather than refuse a conforming client.
    model_config = ConfigDict(extra="allow")


class RequestInput(_OipModel):
    """One input tensor."""

    name: Annotated[str, Field(min_length=1)]
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any]


class RequestOutput(_OipModel):
    """An output the client asks for: when a request names any, only those are returned."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(_OipModel):
    """``POST /v2/models/{name}[/versions/{v}]/infer`` in tensor form."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1)]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_OipModel):
    """One output tensor; ``data`` is flat, row-major."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any]


class InferenceResponse(_OipModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class PlainInferenceRequest(BaseModel):
    """The convenience form: one row as an object, or a list of row objects."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    inputs: dict[str, JsonValue] | list[dict[str, JsonValue]]


class PlainInferenceResponse(BaseModel):
    model: str
    version: int
    predictions: list[JsonValue]
    request_id: str | None = None


class MetadataTensor(_OipModel):
    name: str
    datatype: Datatype
    shape: list[int]


class MetadataModelResponse(_OipModel):
    """``GET /v2/models/{name}[/versions/{v}]``."""

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[MetadataTensor] = Field(default_factory=list)
    outputs: list[MetadataTensor] = Field(default_factory=list)
    parameters: Parameters | None = None


class MetadataServerResponse(_OipModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class ServerLiveResponse(_OipModel):
    live: bool


class ServerReadyResponse(_OipModel):
    ready: bool


class ModelReadyResponse(_OipModel):
    name: str
    ready: bool


def datatype_for(spec: FieldSpec) -> Datatype:
    """The tensor datatype a signature field travels as."""
    return {"float": "FP64", "int": "INT64", "bool": "BOOL"}.get(spec.type, "BYTES")  # type: ignore[return-value]


def metadata_tensor(spec: FieldSpec) -> MetadataTensor:
    """A field as a batch tensor: ``-1`` rows by the field's own shape."""
    return MetadataTensor(name=spec.name, datatype=datatype_for(spec), shape=[-1, *(spec.shape or [])])


def datatype_of(values: list[Any]) -> Datatype:
    """The narrowest datatype that holds every (flattened) value."""
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {bool}:
        return "BOOL"
    if kinds and kinds <= {int}:
        return "INT64"
    if kinds and kinds <= {int, float}:
        return "FP64"
    return "BYTES"
