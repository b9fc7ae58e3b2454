"""``/v2/models/...``: metadata, readiness and inference (Open Inference Protocol v2 + plain JSON).

The body is read raw and parsed with orjson: the form (tensors or plain rows) decides the
response form, and validation against the version's signature happens in the data plane.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fleet_core.errors import InvalidInput
from fleet_core.log import current_request_id
from fleet_core.oip import InferenceRequest, InferenceResponse, MetadataModelResponse, ModelReadyResponse
from fleet_gateway.api.deps import MODEL_NAME_PATTERN, CallerDep, PlaneDep
from fleet_gateway.binary import NO_FRAMING, asks_binary_outputs, binary_response_body, decode_binary_request
from fleet_gateway.dataplane import VERSION_HEADER
from fleet_gateway.protocol import decode_request, oip_response_body, plain_response_body, requested_outputs

router = APIRouter(prefix="/v2/models", tags=["inference"])

ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="Model name")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number")]
MAX_ROUTING_KEY = 256
RECEIPT_HEADER = "X-Fleet-Feedback-Receipt"


def _components(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema and those it refers to, as OpenAPI components referring to each other
    (pydantic's default ``#/$defs/...`` refs do not resolve inside an OpenAPI document)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


INFER_SCHEMAS: dict[str, Any] = _components(InferenceRequest)
"""Components the infer operations refer to; ``app.py`` adds them to the document."""

INFER_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "Authorization",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Bearer <token>; any role of the model's team (or an admin)",
        },
        {
            "name": "X-Fleet-Routing-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": MAX_ROUTING_KEY},
            "description": "Sticky assignment: the same key gets the same version while the route "
            "table is unchanged",
        },
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Binary tensor extension: the body's first N bytes are the JSON request; "
            "inputs with parameters.binary_data_size take their bytes, in order, from the rest",
        },
    ],
    "requestBody": {
        "required": True,
        "description": (
            "Tensor form (Open Inference Protocol v2): one tensor per input named after the "
            "signature, or one 2-D tensor [rows, inputs] with columns in signature order. Plain "
            'form: {"inputs": {"feature": value}} or {"inputs": [{...}, ...]}.'
        ),
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/InferenceRequest"},
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "inputs": {
                                    "oneOf": [
                                        {"type": "object"},
                                        {"type": "array", "items": {"type": "object"}},
                                    ]
                                },
                            },
                            "required": ["inputs"],
                        },
                    ]
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "The tensor form's JSON, then binary tensor data "
                "(with Inference-Header-Content-Length)",
            },
        },
    },
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "OIP response for tensor requests; "
        '{"model", "version", "predictions", "request_id"} for plain ones. '
        "Header X-Fleet-Model-Version names the version that answered; X-Fleet-Feedback-Receipt "
        "proves the answer to /v1/feedback on any gateway instance. Outputs asked for in binary "
        "(parameters.binary_data_output, or binary_data on a requested output) follow the JSON as "
        "application/octet-stream, its length in Inference-Header-Content-Length.",
    }
}


async def _infer(request: Request, name: str, version: int | None) -> Response:
    # The hot path reads app state and headers itself instead of declaring dependencies: FastAPI's
    # dependency solving was the largest per-request cost left after the model call.
    state = request.app.state
    headers = request.headers
    caller = state.gatekeeper.admit(headers.get("authorization"))
    routing_key = headers.get("x-fleet-routing-key")
    if routing_key is not None and len(routing_key) > MAX_ROUTING_KEY:
        raise InvalidInput(
            f"X-Fleet-Routing-Key: at most {MAX_ROUTING_KEY} characters", field="X-Fleet-Routing-Key"
        )
    header_length = headers.get("inference-header-content-length")
    if header_length is None:
        parsed = decode_request(await request.body())
    else:
        parsed = decode_binary_request(await request.body(), header_length, max_rows=state.settings.max_rows)
    request_id = current_request_id() or ""
    result = await state.dataplane.infer(
        caller, name, parsed, version=version, routing_key=routing_key, request_id=request_id
    )
    media_type, framing = "application/json", NO_FRAMING
    if parsed.form == "oip" and asks_binary_outputs(parsed):
        encoded = binary_response_body(
            parsed,
            model=result.model,
            version=result.version,
            request_id=parsed.client_id or request_id,
            predictions=result.predictions,
            signature=result.served.spec.signature,
        )
        body, media_type, framing = encoded.body, encoded.media_type, encoded.headers
    elif parsed.form == "oip":
        body = oip_response_body(
            model=result.model,
            version=result.version,
            request_id=parsed.client_id or request_id,
            predictions=result.predictions,
            signature=result.served.spec.signature,
            requested=requested_outputs(parsed),
        )
    else:
        body = plain_response_body(
            model=result.model, version=result.version, request_id=request_id, predictions=result.predictions
        )
    headers = {VERSION_HEADER: str(result.version), **framing}
    if result.receipt is not None:
        headers[RECEIPT_HEADER] = result.receipt
    return Response(body, media_type=media_type, headers=headers)


@router.post(
    "/{name}/infer",
    summary="Predict with the version the route table picks",
    openapi_extra=INFER_DOC,
    responses=INFER_RESPONSES,
    response_class=Response,
)
async def infer(name: ModelName, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/{name}/versions/{version}/infer",
    summary="Predict with one version, bypassing the split",
    openapi_extra=INFER_DOC,
    responses=INFER_RESPONSES,
    response_class=Response,
)
async def infer_version(name: ModelName, version: Version, request: Request) -> Response:
    return await _infer(request, name, version)


@router.get("/{name}", summary="Model metadata: inputs, outputs, served versions")
async def model_metadata(name: ModelName, caller: CallerDep, plane: PlaneDep) -> MetadataModelResponse:
    return await plane.metadata(caller, name, None)


@router.get("/{name}/versions/{version}", summary="Metadata of one version")
async def version_metadata(
    name: ModelName, version: Version, caller: CallerDep, plane: PlaneDep
) -> MetadataModelResponse:
    return await plane.metadata(caller, name, version)


def _ready(name: str, ready: bool) -> JSONResponse:
    body = ModelReadyResponse(name=name, ready=ready).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/{name}/ready",
    summary="Whether the versions taking traffic are deployed and reachable (503 when not)",
    response_model=ModelReadyResponse,
)
async def model_ready(name: ModelName, caller: CallerDep, plane: PlaneDep) -> JSONResponse:
    return _ready(name, await plane.model_ready(caller, name, None))


@router.get("/{name}/versions/{version}/ready", summary="Whether one version is ready (503 when not)")
async def version_ready(
    name: ModelName, version: Version, caller: CallerDep, plane: PlaneDep
) -> JSONResponse:
    return _ready(name, await plane.model_ready(caller, name, version))
