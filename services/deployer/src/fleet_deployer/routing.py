"""Route-table operations: the single source of routing truth for one model.

Every change yields a new ``RouteTable`` with ``revision + 1``; the whole table is published on
``rollout.updated`` so a gateway never merges partial updates. Plain functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from fleet_core.errors import Conflict, InvalidInput
from fleet_core.events import ArmMode, RouteArm, RouteTable
from fleet_core.schemas import Contract

WEIGHT_TOLERANCE = 1e-6
RouteCause = Literal["direct", "explicit", "rollback", "candidate", "progressive", "undeploy", "batching"]
"""Why a revision was made: a direct deploy, an operator's explicit table, a rollback, a candidate
added at 0 %, a step of a progressive rollout, or an undeploy (the empty table)."""


class ArmRequest(Contract):
    """One arm of an explicit route table, as an operator sends it."""

    version: int
    weight: Annotated[float, Field(ge=0, le=100)] = Field(
        default=0.0, description="Percent of primary traffic; ignored (0) for shadow arms"
    )
    mode: ArmMode = "primary"
    sticky: bool = Field(default=False, description="Assign by hashing X-Fleet-Routing-Key")
    deployment: str | None = Field(
        default=None, description="Ignored: the deployer fills in where the version runs"
    )


@dataclass(frozen=True)
class RouteRevision:
    """One revision of a model's route table in its history."""

    table: RouteTable
    cause: RouteCause


def empty_table(model: str) -> RouteTable:
    """The table of a model nothing was routed to yet (revision 0)."""
    return RouteTable(model=model, revision=0, arms=[])


def next_table(current: RouteTable, arms: list[RouteArm]) -> RouteTable:
    """The revision after ``current`` with these arms; the model's batch settings carry over."""
    return RouteTable(
        model=current.model, revision=current.revision + 1, arms=arms, batching=current.batching
    )


def stable_version(table: RouteTable) -> int | None:
    """The version that takes all primary traffic, if exactly one does."""
    primaries = [a for a in table.arms if a.mode == "primary" and a.weight > 0]
    if len(primaries) == 1 and math.isclose(primaries[0].weight, 100.0, abs_tol=WEIGHT_TOLERANCE):
        return primaries[0].version
    return None


def weight_of(table: RouteTable, version: int) -> float:
    """Percent of primary traffic ``version`` gets under ``table`` (0 for shadow or absent)."""
    return sum(a.weight for a in table.arms if a.version == version and a.mode == "primary")


def direct_table(current: RouteTable, version: int, deployment: str) -> RouteTable:
    """All primary traffic to ``version``; every previous arm (shadows too) is dropped."""
    return next_table(current, [RouteArm(version=version, weight=100.0, deployment=deployment)])


def explicit_table(
    current: RouteTable,
    arms: Sequence[ArmRequest],
    *,
    known: set[int],
    deployed: Mapping[int, str],
) -> RouteTable:
    """An operator's table: weighted primary arms summing to 100, one sticky flag, shadow arms.

    ``known`` are the versions the deployer knows; ``deployed`` maps each version that runs (or is
    about to) to the serving application that hosts it. Errors name the offending field.
    """
    if not arms:
        raise InvalidInput("a route table needs at least one primary arm", field="arms")
    seen: set[int] = set()
    result: list[RouteArm] = []
    primaries: list[tuple[int, ArmRequest]] = []
    for i, arm in enumerate(arms):
        field = f"arms[{i}].version"
        if arm.version in seen:
            raise InvalidInput(f"version {arm.version} appears more than once", field=field)
        seen.add(arm.version)
        if arm.version not in known:
            raise InvalidInput(f"model '{current.model}' has no version {arm.version}", field=field)
        if arm.version not in deployed:
            raise InvalidInput(
                f"version {arm.version} is not deployed; deploy it first (POST /v1/deployments)",
                field=field,
            )
        if arm.mode == "shadow":
            # Shadow arms get copies of requests; their answers are never returned.
            result.append(
                RouteArm(version=arm.version, weight=0.0, mode="shadow", deployment=deployed[arm.version])
            )
            continue
        primaries.append((i, arm))
        result.append(
            RouteArm(
                version=arm.version,
                weight=arm.weight,
                mode="primary",
                sticky=arm.sticky,
                deployment=deployed[arm.version],
            )
        )
    if not primaries:
        raise InvalidInput("a route table needs at least one primary arm", field="arms")
    total = sum(a.weight for _, a in primaries)
    if not math.isclose(total, 100.0, abs_tol=WEIGHT_TOLERANCE):
        raise InvalidInput(f"primary arm weights must sum to 100, not {total:g}", field="arms.weight")
    sticky = primaries[0][1].sticky
    for i, arm in primaries:
        if arm.sticky != sticky:
            raise InvalidInput("every primary arm must share one sticky setting", field=f"arms[{i}].sticky")
    return next_table(current, result)


def previous_stable(history: Sequence[RouteRevision]) -> int:
    """The version to roll back to: the newest earlier stable version that differs from the current
    one and was not rolled back from since. ``history`` is oldest first and ends with the current
    table. Raises ``Conflict`` when there is none.
    """
    if not history:
        raise Conflict("nothing was routed yet, so there is nothing to roll back to", field="model")
    current = stable_version(history[-1].table)
    rolled_back_from: set[int] = set()
    for j in range(len(history) - 2, -1, -1):
        if history[j + 1].cause == "rollback":
            rolled_back_from |= {
                a.version for a in history[j].table.arms if a.mode == "primary" and a.weight > 0
            }
        version = stable_version(history[j].table)
        if version is not None and version != current and version not in rolled_back_from:
            return version
    raise Conflict(
        f"model '{history[-1].table.model}' has no earlier stable version to roll back to", field="model"
    )
