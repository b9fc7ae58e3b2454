"""/v1/models: create, list, show, update, archive; aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from fleet_core.errors import Forbidden, InvalidInput
from fleet_core.schemas import DeliveryGate
from fleet_registry.api.deps import CurrentPrincipal, DeliveryDep, Limit, Offset, StoreDep
from fleet_registry.api.schemas import AliasSet, ModelCreate, ModelUpdate
from fleet_registry.compare import MAX_COMPARED, Comparison, compare
from fleet_registry.entities import Model, ModelSort, ModelVersion, Page

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a model")
async def create_model(body: ModelCreate, store: StoreDep, who: CurrentPrincipal) -> Model:
    return await store.create_model(who, body)


@router.get(
    "",
    summary="List models (filter by team, tag or name; sorted; paginated)",
    description="Filters combine and apply within the teams the caller may read; `total` counts every "
    "match. `sort`: `name`, `updated` or `created`; a leading `-` sorts descending.",
)
async def list_models(
    store: StoreDep,
    who: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    team: Annotated[str | None, Query(max_length=100, description="Only this team's models")] = None,
    tag: Annotated[str | None, Query(max_length=100, description="Only models with this tag")] = None,
    name: Annotated[str | None, Query(max_length=100, description="Name contains")] = None,
    include_archived: bool = False,
    sort: Annotated[ModelSort, Query(description="name, updated, created; -desc")] = "name",
) -> Page[Model]:
    return await store.list_models(
        who,
        team=team,
        tag=tag,
        name=name,
        include_archived=include_archived,
        sort=sort,
        limit=limit,
        offset=offset,
    )


@router.get("/{name}", summary="Show a model")
async def get_model(name: str, store: StoreDep, who: CurrentPrincipal) -> Model:
    return await store.get_model(who, name)


@router.patch("/{name}", summary="Update a model's description or tags")
async def update_model(name: str, body: ModelUpdate, store: StoreDep, who: CurrentPrincipal) -> Model:
    return await store.update_model(who, name, body)


@router.post("/{name}/archive", summary="Archive a model (models are never deleted)")
async def archive_model(name: str, store: StoreDep, who: CurrentPrincipal) -> Model:
    return await store.archive_model(who, name, True)


@router.post("/{name}/unarchive", summary="Bring an archived model back")
async def unarchive_model(name: str, store: StoreDep, who: CurrentPrincipal) -> Model:
    return await store.archive_model(who, name, False)


@router.get("/{name}/aliases/{alias}", summary="The version an alias points at")
async def get_alias(name: str, alias: str, store: StoreDep, who: CurrentPrincipal) -> ModelVersion:
    return await store.resolve_alias(who, name, alias)


@router.put("/{name}/aliases/{alias}", summary="Point an alias (e.g. champion) at a version")
async def set_alias(
    name: str,
    alias: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$")],
    body: AliasSet,
    store: StoreDep,
    who: CurrentPrincipal,
) -> ModelVersion:
    return await store.set_alias(who, name, alias, body.version)


@router.delete("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an alias")
async def delete_alias(name: str, alias: str, store: StoreDep, who: CurrentPrincipal) -> None:
    await store.delete_alias(who, name, alias)


@router.get("/{name}/gate", summary="The model's delivery gate (defaults when none was set)")
async def get_gate(name: str, delivery: DeliveryDep, who: CurrentPrincipal) -> DeliveryGate:
    return await delivery.gate(who, name)


@router.put(
    "/{name}/gate",
    summary="Set the model's delivery gate (deployer role)",
    description="What a version registered with `deploy_policy=gated` must pass before it takes traffic: "
    "primary metric and minimum improvement over the champion on a holdout, latency budget, approvals.",
)
async def put_gate(
    name: str, body: DeliveryGate, delivery: DeliveryDep, who: CurrentPrincipal
) -> DeliveryGate:
    return await delivery.put_gate(who, name, body)


@router.get(
    "/{name}/compare",
    summary="Versions side by side, and how each differs from the first",
    description="`versions` two to ten times (`?versions=3&versions=4`); the first is the baseline. "
    "Metrics, hyperparameters, recipe, training data (rows, columns), lineage and delivery checks of "
    "each; the metrics and hyperparameters that differ; how far each feature's training distribution "
    "moved from the baseline's (standardised mean shift and KS for numeric features, PSI for "
    "categorical ones). Live metrics while they serve are the monitor's (`fleet versions compare`).",
)
async def compare_versions(
    name: str,
    store: StoreDep,
    delivery: DeliveryDep,
    who: CurrentPrincipal,
    versions: Annotated[
        list[int], Query(min_length=2, max_length=MAX_COMPARED, description="Version numbers")
    ],
) -> Comparison:
    if len(set(versions)) != len(versions):
        raise InvalidInput("name each version once", field="versions")
    found = [await store.get_version(who, name, v) for v in versions]
    datasets = {}
    for v in found:
        if v.dataset_version is None:
            continue
        try:
            datasets[v.version] = await store.get_dataset_version(
                who, v.dataset_version.dataset, v.dataset_version.version
            )
        except Forbidden:  # another team's dataset: compared without it
            datasets[v.version] = None
    deliveries = {v: await delivery.status(who, name, v) for v in versions}
    return compare(name, found, datasets, deliveries)
