"""What the deployer asks of the serving engine, and an async driver around it.

``ServingControlPort`` is the part of ``fleet_serving.control.ServingControl`` the deployer calls;
tests pass an in-memory fake of it. Its calls block (they talk to Ray), so ``ServingDriver`` runs
them in a worker thread, one at a time. With no Ray address the driver is disabled: nothing is
applied and deployments stay ``pending``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fleet_core.errors import NotFound
from fleet_core.schemas import ResourceQuota
from fleet_core.serving import ModelSpec, Placement, PoolConfig, PoolSizing

T = TypeVar("T")


class ServingControlPort(Protocol):
    """The calls the deployer makes on the serving engine (all synchronous)."""

    def connect(self, address: str) -> None: ...

    def apply_pool(self, config: PoolConfig, sizing: PoolSizing, env: dict[str, str]) -> Any: ...

    def apply_dedicated(
        self, spec: ModelSpec, quota: ResourceQuota, idle_s: float, env: dict[str, str]
    ) -> Any: ...

    def remove(self, app_name: str) -> Any: ...

    async def smoke_test(
        self, spec: ModelSpec, placement: Placement, rows: list[dict[str, Any]]
    ) -> list[Any]: ...

    def describe(self, app_name: str) -> Any: ...

    def list_apps(self) -> Iterable[Any]: ...

    def pool_stats(self) -> Iterable[Any]: ...

    """``ModelPool.stats`` of every running pool replica."""


class AppView(BaseModel):
    """The deployer's summary of one Ray Serve application, from ``describe``."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    status: str = Field(description="Ray Serve application status, e.g. RUNNING, DEPLOYING")
    message: str | None = None
    replicas: int | None = Field(default=None, description="Running replicas, over its deployments")
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    autoscaling: dict[str, Any] | None = Field(
        default=None, description="Autoscaling bounds Serve holds (min_replicas, max_replicas, ...)"
    )
    actor_options: dict[str, Any] = Field(
        default_factory=dict, description="ray_actor_options Serve holds (num_cpus, memory, resources)"
    )
    actor_resources: dict[str, Any] = Field(
        default_factory=dict, description="Resources Ray reserved for one replica actor (state API)"
    )
    deployments: dict[str, Any] = Field(
        default_factory=dict, description="Serve's full view of each deployment, as the engine reports it"
    )


def to_app_view(raw: Any) -> AppView | None:
    """Summarise whatever ``describe`` returned: the engine's nested view, a flat dict, or None."""
    if raw is None:
        return None
    if isinstance(raw, AppView):
        return raw
    if isinstance(raw, BaseModel):
        data = raw.model_dump(mode="json")
    elif isinstance(raw, dict):
        data = dict(raw)
    else:
        data = {k: v for k, v in vars(raw).items() if not k.startswith("_")}
    deployments = data.get("deployments") or {}
    if deployments:
        running = 0
        for d in deployments.values():
            states = d.get("replica_states") or {}
            running += int(states.get("RUNNING", 0))
        main = next(iter(deployments.values()))
        scaling = main.get("autoscaling") or {}
        replicas = main.get("replicas") or []
        resources = (replicas[0].get("required_resources") if replicas else None) or {
            k: v for k, v in (main.get("actor_options") or {}).items() if k in ("num_cpus", "memory") and v
        }
        data.setdefault("replicas", running)
        data.setdefault("min_replicas", scaling.get("min_replicas"))
        data.setdefault("max_replicas", scaling.get("max_replicas"))
        data.setdefault("target_ongoing_requests", scaling.get("target_ongoing_requests"))
        data.setdefault("actor_resources", resources)
        data.setdefault("autoscaling", scaling or None)
        data.setdefault("actor_options", main.get("actor_options") or {})
    return AppView.model_validate(data)


def app_names(raw: Iterable[Any]) -> set[str]:
    """Names from ``list_apps``: plain names, or objects/dicts with a ``name``."""
    if isinstance(raw, dict):
        return {str(k) for k in raw}
    names: set[str] = set()
    for item in raw:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, dict):
            names.add(str(item["name"]))
        else:
            names.add(str(item.name))
    return names


class ServingDisabled(RuntimeError):
    """Serving control is off (no Ray address configured)."""


class ServingDriver:
    """Runs serving-control calls off the event loop, serialised by one lock."""

    def __init__(self, control: ServingControlPort | None, address: str | None) -> None:
        self._control = control
        self.address = address
        self._lock = asyncio.Lock()
        self.connected = False
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self._control is not None and self.address is not None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.enabled:
            raise ServingDisabled("serving control is disabled: FLEET_RAY_ADDRESS is not set")
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    @property
    def control(self) -> ServingControlPort:
        if self._control is None:
            raise ServingDisabled("serving control is disabled: FLEET_RAY_ADDRESS is not set")
        return self._control

    async def connect(self) -> None:
        assert self.address is not None
        try:
            await self._call(self.control.connect, self.address)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        self.connected = True
        self.last_error = None

    async def apply_pool(self, config: PoolConfig, sizing: PoolSizing, env: dict[str, str]) -> None:
        await self._call(self.control.apply_pool, config, sizing, env)

    async def apply_dedicated(
        self, spec: ModelSpec, quota: ResourceQuota, idle_s: float, env: dict[str, str]
    ) -> None:
        await self._call(self.control.apply_dedicated, spec, quota, idle_s, env)

    async def remove(self, app_name: str) -> None:
        await self._call(self.control.remove, app_name)

    async def smoke_test(
        self, spec: ModelSpec, placement: Placement, rows: list[dict[str, Any]], timeout_s: float = 120.0
    ) -> list[Any]:
        """On the event loop, not a worker thread: Serve handles route in the caller's loop."""
        async with self._lock:
            return await asyncio.wait_for(self.control.smoke_test(spec, placement, rows), timeout_s)

    async def describe(self, app_name: str) -> AppView | None:
        if not self.connected:
            return None
        try:
            raw = await self._call(self.control.describe, app_name)
        except (KeyError, LookupError, NotFound):
            # An app that should exist but does not is shown as absent; reconcile recreates it.
            return None
        return to_app_view(raw)

    async def list_apps(self) -> set[str]:
        return app_names(await self._call(self.control.list_apps))

    async def pool_stats(self) -> list[dict[str, Any]]:
        """Each pool replica's stats as plain data; none while disconnected."""
        if not self.connected:
            return []
        raw = await self._call(self.control.pool_stats)
        return [r.model_dump(mode="json") if isinstance(r, BaseModel) else dict(r) for r in raw]
