"""``/v2/repository/...``: the Open Inference Protocol's model repository extension, mapped onto
the deployer.

- ``POST /v2/repository/index`` lists the deployments the caller's teams may see, as Triton shapes
  its index (``[{"name", "version", "state", "reason"}]``): ``READY``, ``LOADING`` (pending or
  deploying), ``UNAVAILABLE`` (failed, with the error; or unloaded). ``{"ready": true}`` asks the
  deployer for ready deployments only.
- ``POST /v2/repository/models/{name}/load`` deploys the model's latest registered version with
  all traffic (the deployer's ``POST /v1/deployments``).
- ``POST /v2/repository/models/{name}/unload`` undeploys it (``DELETE /v1/deployments/{name}``).

The gateway admits the caller (token, rate limit) and forwards the caller's token: the deployer's
own role-and-team checks decide, as for its own routes. After a load or unload the route book
applies the route the deployer answered with at once (the same table ``rollout.updated`` carries
moments later, which is then ignored as stale), so this gateway serves or refuses the model on the
very next request. Models are registered through the registry, never uploaded through the
gateway: a load that carries files or a model configuration is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, JsonValue, StrictBool, ValidationError

from fleet_core.errors import InvalidInput, MalformedRequest
from fleet_core.schemas import Contract
from fleet_core.serving import DeploymentState, ModelRoute
from fleet_gateway.api.deps import MODEL_NAME_PATTERN, CallerDep
from fleet_gateway.deployer_client import DeployerClient
from fleet_gateway.routing import RouteBook

router = APIRouter(prefix="/v2/repository", tags=["repository"])

ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="Model name")]
ModelState = Literal["READY", "LOADING", "UNAVAILABLE"]
STATES: dict[DeploymentState, ModelState] = {
    "ready": "READY",
    "pending": "LOADING",
    "deploying": "LOADING",
    "failed": "UNAVAILABLE",
    "retired": "UNAVAILABLE",
}
UPLOAD_REFUSED = (
    "models are registered through the registry (POST /v1/models/{name}/versions or `fleet "
    "register`), never uploaded through the gateway"
)


class RepositoryIndexRequest(Contract):
    """The index request: every deployment, or only the ready ones."""

    ready: StrictBool | None = Field(default=None, description="true: only models ready to serve")


class RepositoryModel(BaseModel):
    """One deployed version in the index (Triton's shape: ``version`` is a string)."""

    name: str
    version: str
    state: ModelState
    reason: str = Field(default="", description="Why it is not ready: the deploy error, or 'unloaded'")


class RepositoryLoadRequest(Contract):
    parameters: dict[str, JsonValue] | None = Field(
        default=None,
        description="Refused when present: `config` (the registration's signature, flavor and quota "
        "configure a model) and `file:<path>` (uploads; register the version instead)",
    )


class UnloadParameters(Contract):
    unload_dependents: StrictBool = Field(
        default=False, description="Accepted; a ModelFleet model has no dependents"
    )


class RepositoryUnloadRequest(Contract):
    parameters: UnloadParameters | None = None


class RepositoryAction(BaseModel):
    """What a load or unload left: the version taking traffic, or none."""

    name: str
    version: str = Field(description="The version taking all traffic after a load; '' after an unload")
    state: ModelState


BodyT = TypeVar("BodyT", bound=BaseModel)


async def _read(request: Request, schema: type[BodyT]) -> BodyT:
    """The body as ``schema``, whatever its content type (tritonclient sends JSON without saying so;
    its index request is empty): 400 when it is not JSON, 422 naming the field when it does not fit."""
    raw = await request.body()
    if not raw.strip():
        return schema()
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the request body is not valid JSON: {exc}") from exc
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0]
        raise InvalidInput(
            f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        ) from None


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/...`` reference replaced by its definition (such references do
    not resolve inside an OpenAPI document; these schemas are small and not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body_doc(schema: type[BaseModel]) -> dict[str, Any]:
    """The operation's (optional) JSON body, for a route that reads it raw."""
    document = schema.model_json_schema()
    body = _inline(document, document.pop("$defs", {}))
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": body}}}}


def _client(request: Request) -> DeployerClient:
    return request.app.state.deployer  # type: ignore[no-any-return]


def _token(request: Request) -> str:
    # The gatekeeper already verified it: CallerDep runs first.
    return request.headers["authorization"]


def _learn(request: Request, route: ModelRoute) -> None:
    book: RouteBook = request.app.state.routes
    book.apply_route(route)


def _primary(route: ModelRoute) -> int | None:
    primaries = [a for a in route.table.arms if a.mode == "primary" and a.weight > 0]
    return max(primaries, key=lambda a: a.weight).version if primaries else None


@router.post(
    "/index",
    summary="The deployed versions the caller's teams may see, with their state",
    description="Triton's repository index: `READY`, `LOADING` (pending or deploying) or "
    "`UNAVAILABLE` (failed, with the error as `reason`; or `unloaded`). The body may be empty.",
    openapi_extra=_body_doc(RepositoryIndexRequest),
)
async def repository_index(request: Request, caller: CallerDep) -> list[RepositoryModel]:
    body = await _read(request, RepositoryIndexRequest)
    ready = body.ready is True
    items = await _client(request).deployments(
        _token(request), state="ready" if ready else None, include_retired=not ready
    )
    return [
        RepositoryModel(
            name=d.model,
            version=str(d.version),
            state=STATES[d.state],
            reason="unloaded" if d.state == "retired" else (d.error or "") if d.state == "failed" else "",
        )
        for d in items
    ]


def _refuse_parameters(parameters: dict[str, JsonValue] | None) -> None:
    for key in parameters or {}:
        field = f"parameters.{key}"
        if key.startswith("file:"):
            raise InvalidInput(f"{field}: {UPLOAD_REFUSED}", field=field)
        if key == "config":
            raise InvalidInput(
                f"{field}: a model's configuration comes from its registration (signature, flavor, "
                "quota); register a new version to change it",
                field=field,
            )
        raise InvalidInput(f"{field}: not a load parameter this server takes", field=field)


@router.post(
    "/models/{name}/load",
    summary="Deploy the model's latest registered version with all traffic",
    description="The deployer's direct deploy (`POST /v1/deployments`), with the caller's token: "
    "the deployer role of the model's team. 404 when the model has no registered version; 502 "
    "when Ray refuses it. The gateway serves it from the next request. `config` and `file:` "
    "parameters are refused (422): models come from the registry, never from an upload.",
    openapi_extra=_body_doc(RepositoryLoadRequest),
)
async def load_model(name: ModelName, request: Request, caller: CallerDep) -> RepositoryAction:
    _refuse_parameters((await _read(request, RepositoryLoadRequest)).parameters)
    route = await _client(request).deploy(_token(request), name)
    _learn(request, route)
    version = _primary(route)
    served = next((v for v in route.versions if v.spec.version == version), None)
    state = STATES[served.state] if served is not None else "UNAVAILABLE"
    return RepositoryAction(name=name, version=str(version or ""), state=state)


@router.post(
    "/models/{name}/unload",
    summary="Undeploy the model: no route, every version retired",
    description="The deployer's undeploy (`DELETE /v1/deployments/{name}`), with the caller's "
    "token: the deployer role of the model's team. The gateway answers 404 for the model from "
    "the next request; `POST /v1/models/{name}/rollback` on the deployer restores it.",
    openapi_extra=_body_doc(RepositoryUnloadRequest),
)
async def unload_model(name: ModelName, request: Request, caller: CallerDep) -> RepositoryAction:
    await _read(request, RepositoryUnloadRequest)
    route = await _client(request).undeploy(_token(request), name)
    _learn(request, route)
    return RepositoryAction(name=name, version="", state="UNAVAILABLE")
