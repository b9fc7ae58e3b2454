"""Where a version runs: its own deployment when it carries a quota, otherwise the shared pool.

A ``python``-flavor version runs its publisher's code, so it never shares a process with other
teams' models: without a quota of its own it gets a dedicated deployment with the default quota.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleet_core.schemas import ResourceQuota
from fleet_core.serving import ModelSpec, Placement, PoolConfig, pool_refusal

ISOLATED_FLAVORS = frozenset({"python"})


def effective_quota(
    requested: ResourceQuota | None, registered: ResourceQuota | None, flavor: str
) -> ResourceQuota | None:
    """A deploy request's quota wins over the one the version was registered with; a version whose
    flavor runs publisher code always gets one (and so its own deployment)."""
    quota = requested if requested is not None else registered
    if quota is None and flavor in ISOLATED_FLAVORS:
        return ResourceQuota()
    return quota


def placement_for(model: str, version: int, quota: ResourceQuota | None) -> Placement:
    """A version with a quota gets a dedicated deployment; the rest share the pool."""
    return Placement.dedicated(model, version) if quota is not None else Placement.pool()


def pool_config(
    specs: Iterable[ModelSpec], *, idle_unload_s: float, budget_bytes: int | None = None
) -> PoolConfig:
    """The pool's ``user_config``: every pool-placed version, keyed by ``model_key``, except those
    too large for a replica's model budget (``pool_refusal``): those are never loaded there."""
    return PoolConfig(
        models={s.key: s for s in specs if pool_refusal(s, budget_bytes) is None},
        idle_unload_s=idle_unload_s,
    )
