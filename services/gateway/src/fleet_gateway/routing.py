"""Which version answers a request: route tables, weighted and sticky splits, shadow arms.

Plain Python, no HTTP, Kafka or Ray. The ``RouteBook`` holds, per model, the latest
``RouteTable`` (stale revisions are ignored) and the ``ServedVersion``s the deployer reported.
``route_for(model, routing_key)`` picks a primary arm by weight: with a routing key the pick is a
stable hash of it (the same key gets the same version while the table is unchanged); without one
it is random. Shadow arms are returned alongside so the caller can mirror the request.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet_core.events import BatchSettings, RouteArm, RouteTable
from fleet_core.serving import ModelRoute, ServedVersion

UNSERVABLE_STATES = frozenset({"failed", "retired"})


@dataclass(frozen=True)
class CompiledTable:
    """A route table prepared once so that each request only draws a number and bisects."""

    table: RouteTable
    primaries: tuple[RouteArm, ...]
    cumulative: tuple[float, ...]
    shadows: tuple[RouteArm, ...]

    @classmethod
    def compile(cls, table: RouteTable) -> CompiledTable:
        primaries = tuple(a for a in table.arms if a.mode == "primary" and a.weight > 0)
        total = sum(a.weight for a in primaries)
        cumulative: list[float] = []
        running = 0.0
        for arm in primaries:
            running += arm.weight / total
            cumulative.append(running)
        if cumulative:
            cumulative[-1] = 1.0
        shadows = tuple(a for a in table.arms if a.mode == "shadow")
        return cls(table, primaries, tuple(cumulative), shadows)

    def pick(self, point: float) -> RouteArm | None:
        """The primary arm that owns ``point`` in [0, 1)."""
        if not self.primaries:
            return None
        return self.primaries[min(bisect.bisect_right(self.cumulative, point), len(self.primaries) - 1)]


def routing_point(model: str, routing_key: str) -> float:
    """A stable point in [0, 1) for a routing key (the same on every gateway and every restart)."""
    digest = hashlib.blake2b(f"{model}\x00{routing_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class ModelEntry:
    model: str
    team: str | None
    compiled: CompiledTable | None
    served: dict[int, ServedVersion] = field(default_factory=dict)

    @property
    def revision(self) -> int:
        return self.compiled.table.revision if self.compiled else -1


@dataclass(frozen=True)
class RouteDecision:
    """The primary arm that answers, and the shadow arms that get a copy."""

    model: str
    version: int
    arm: RouteArm | None
    shadows: tuple[RouteArm, ...]


class NoRoute(LookupError):
    """The model is unknown, has no primary arm, or the version is not served."""


class RouteBook:
    """Every model's route table and served versions, as this gateway knows them."""

    def __init__(self, rng: Callable[[], float] | None = None) -> None:
        self._models: dict[str, ModelEntry] = {}
        self._random = rng or random.random
        self.loaded = False
        """True once a full snapshot (or an injected one) has been applied."""

    # ------------------------------------------------------------------ updates

    def apply_route(self, route: ModelRoute) -> bool:
        """A deployer snapshot of one model; ignored when its table is older than ours."""
        entry = self._models.get(route.model)
        if entry is not None and route.table.revision < entry.revision:
            # Keep our newer table, but learn the serving details of the versions it may name.
            entry.served.update({v.spec.version: v for v in route.versions})
            entry.team = route.team
            return False
        self._models[route.model] = ModelEntry(
            model=route.model,
            team=route.team,
            compiled=CompiledTable.compile(route.table),
            served={v.spec.version: v for v in route.versions},
        )
        return True

    def apply_snapshot(self, routes: list[ModelRoute]) -> None:
        """A full snapshot: its models replace ours (newer tables we already hold are kept)."""
        present = {r.model for r in routes}
        for model in list(self._models):
            if model not in present:
                del self._models[model]
        for route in routes:
            self.apply_route(route)
        self.loaded = True

    def apply_table(self, table: RouteTable) -> bool:
        """A ``rollout.updated`` table; True when applied, False when stale."""
        entry = self._models.get(table.model)
        if entry is None:
            self._models[table.model] = ModelEntry(table.model, None, CompiledTable.compile(table))
            return True
        if table.revision <= entry.revision:
            return False
        entry.compiled = CompiledTable.compile(table)
        return True

    def missing_versions(self, model: str) -> list[int]:
        """Versions the table routes to that we cannot serve yet: no serving details, or details
        from a snapshot taken while the version was still deploying."""
        entry = self._models.get(model)
        if entry is None or entry.compiled is None:
            return []
        return [
            a.version
            for a in entry.compiled.table.arms
            if a.version not in entry.served or entry.served[a.version].state in UNSERVABLE_STATES
        ]

    # ------------------------------------------------------------------ reads

    def models(self) -> list[str]:
        return sorted(self._models)

    def knows(self, model: str) -> bool:
        entry = self._models.get(model)
        return entry is not None and entry.team is not None

    def team(self, model: str) -> str:
        entry = self._models.get(model)
        if entry is None or entry.team is None:
            raise NoRoute(f"model '{model}' is not deployed")
        return entry.team

    def table(self, model: str) -> RouteTable | None:
        entry = self._models.get(model)
        return entry.compiled.table if entry and entry.compiled else None

    def batching(self, model: str) -> BatchSettings | None:
        """The model's batch settings from its route table (None: the gateway's defaults)."""
        entry = self._models.get(model)
        return entry.compiled.table.batching if entry is not None and entry.compiled is not None else None

    def compares(self, model: str) -> bool:
        """True while the model's traffic goes to more than one version (a canary or A/B split, a
        shadow arm): its versions are being measured against each other."""
        entry = self._models.get(model)
        if entry is None or entry.compiled is None:
            return False
        compiled = entry.compiled
        return bool(compiled.shadows) or len({a.version for a in compiled.primaries}) > 1

    def served(self, model: str, version: int) -> ServedVersion | None:
        entry = self._models.get(model)
        if entry is None:
            return None
        served = entry.served.get(version)
        if served is None or served.state in UNSERVABLE_STATES:
            return None
        return served

    def served_versions(self, model: str) -> list[ServedVersion]:
        entry = self._models.get(model)
        if entry is None:
            return []
        return [v for _, v in sorted(entry.served.items()) if v.state not in UNSERVABLE_STATES]

    def route_for(self, model: str, routing_key: str | None = None) -> RouteDecision:
        """Pick the primary arm for one request (sticky when a routing key is given)."""
        entry = self._models.get(model)
        if entry is None or entry.compiled is None:
            raise NoRoute(f"model '{model}' is not deployed")
        compiled = entry.compiled
        point = routing_point(model, routing_key) if routing_key else self._random()
        arm = compiled.pick(point)
        if arm is None:
            raise NoRoute(f"model '{model}' has no primary arm with traffic")
        return RouteDecision(model, arm.version, arm, compiled.shadows)

    def route_to_version(self, model: str, version: int) -> RouteDecision:
        """An explicit version: no split; shadows still get their copy."""
        entry = self._models.get(model)
        if entry is None:
            raise NoRoute(f"model '{model}' is not deployed")
        compiled = entry.compiled
        arm = next((a for a in compiled.primaries if a.version == version), None) if compiled else None
        shadows = tuple(s for s in compiled.shadows if s.version != version) if compiled else ()
        return RouteDecision(model, version, arm, shadows)
