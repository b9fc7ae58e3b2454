"""The rest of the fleet, as the retrainer sees it: the registry (champions, recipes, training
data; winners are registered there) and the monitor's inference lake (labelled traffic).

It talks through the SDK's client with a short-lived service token minted with the shared JWT
secret; the client is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import pandas as pd

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.errors import NotFound
from fleet_core.schemas import CheckResult
from fleet_core.serving import ModelSpec
from fleet_sdk.client import Client
from fleet_sdk.config import ClientConfig
from fleet_sdk.errors import FleetAPIError

SERVICE_SUBJECT = "service:retrainer"
CHECKS_SCOPE = "delivery:checks"
"""The scope the registry demands of whoever records a version's checks."""
ROLLOUT_TOKEN_TTL = timedelta(hours=6)
JOB_LOOKUP_LIMIT = 10
"""Retrained versions of one parent read back when looking for a job's (newest first)."""


def spec_of(version: dict[str, Any]) -> ModelSpec:
    """The serving spec of a version as the registry returns it (what a replica loads)."""
    return ModelSpec(
        model=version["model"],
        version=version["version"],
        team=version["team"],
        flavor=version["flavor"],
        task=version["task"],
        artifact_uri=version["artifact_uri"],
        sha256=version["sha256"],
        size_bytes=version["size_bytes"],
        signature=version["signature"],
        example_input=version.get("example_input"),
    )


def job_marker(job_id: str) -> str:
    """What a retrained version's description carries to name the job that registered it."""
    return f"[retrain job {job_id}]"


class Fleet:
    def __init__(
        self, registry_url: str, monitor_url: str, tokens: TokenAuthority, *, deployer_url: str = ""
    ) -> None:
        self.registry_url = registry_url
        self.monitor_url = monitor_url
        self.deployer_url = deployer_url
        self.tokens = tokens

    def rollout_token(self, team: str) -> str:
        """The bearer token a ``rollout.requested`` of this team's model carries (``fleetauth``): the
        deployer acts on the event only with it. It must outlive the event's wait in the outbox."""
        token, _, _ = self.tokens.issue(SERVICE_SUBJECT, Role.DEPLOYER, [team], ttl=ROLLOUT_TOKEN_TTL)
        return token

    def _client(self, scopes: list[str] | None = None) -> Client:
        token, _, _ = self.tokens.issue(
            SERVICE_SUBJECT, Role.DEPLOYER, [ALL_TEAMS], scopes=scopes, ttl=timedelta(minutes=30)
        )
        config = ClientConfig(
            registry_url=self.registry_url,
            token=token,
            urls={"monitor_url": self.monitor_url, "gateway_url": "", "deployer_url": self.deployer_url},
        )
        return Client(config=config, timeout=120.0)

    async def _call(self, fn_name: str, *args: Any, scopes: list[str] | None = None, **kwargs: Any) -> Any:
        def call() -> Any:
            with self._client(scopes) as client:
                return getattr(client, fn_name)(*args, **kwargs)

        return await asyncio.to_thread(call)

    async def version(self, model: str, version: int | str) -> dict[str, Any]:
        return await self._call("get_version", model, version)  # type: ignore[no-any-return]

    async def _found(self, fn_name: str, name: str) -> dict[str, Any] | None:
        """The registry's record of ``name``; None when it has none (404)."""
        try:
            return await self._call(fn_name, name)  # type: ignore[no-any-return]
        except FleetAPIError as exc:
            if exc.status == 404:
                return None
            raise

    async def model_team(self, model: str) -> str | None:
        """The team the registry says ``model`` belongs to; None if the registry has no such model."""
        found = await self._found("get_model", model)
        return found.get("team") if found else None

    async def dataset_team(self, name: str) -> str | None:
        """The team that owns dataset ``name``; None if the registry has no such dataset."""
        found = await self._found("get_dataset", name)
        return found.get("team") if found else None

    async def latest_version(self, model: str) -> int | None:
        found = await self._found("get_model", model)
        return found.get("latest_version") if found else None

    async def registered_by_job(
        self, model: str, job_id: str, *, parent_version: int
    ) -> dict[str, Any] | None:
        """The version of ``model`` that retrain job ``job_id`` registered (the full version), or
        None. Candidates are the retrains of ``parent_version`` that this service registered
        (``created_by`` is its own subject, which no other caller's token carries), newest first;
        the job's id is in the description it registered them with."""
        summaries = await self._call("list_versions", model)
        mine = sorted(
            (
                v["version"]
                for v in summaries
                if v.get("origin") == "retrain"
                and v.get("parent_version") == parent_version
                and v.get("created_by") == SERVICE_SUBJECT
            ),
            reverse=True,
        )
        for number in mine[:JOB_LOOKUP_LIMIT]:
            version = await self.version(model, number)
            if job_marker(job_id) in (version.get("description") or ""):
                return version
        return None

    async def delivery(self, model: str, version: int) -> dict[str, Any]:
        """Where a version stands in its model's delivery gate, with the gate itself."""
        return await self._call("version_checks", model, version)  # type: ignore[no-any-return]

    async def record_checks(self, model: str, version: int, checks: list[CheckResult]) -> dict[str, Any]:
        """Report a gated version's checks; only this call carries the ``delivery:checks`` scope."""
        return await self._call(  # type: ignore[no-any-return]
            "record_checks",
            model,
            version,
            [c.model_dump(mode="json") for c in checks],
            scopes=[CHECKS_SCOPE],
        )

    async def serving_version(self, model: str, *, exclude: int | None = None) -> int | None:
        """The version that takes most of ``model``'s primary traffic, per the deployer (not
        ``exclude``); None when nothing serves or no deployer is configured."""
        if not self.deployer_url:
            return None
        try:
            routes = await self._call("routes", model)
        except FleetAPIError as exc:
            if exc.status == 404:
                return None
            raise
        arms = [
            a
            for a in routes.get("table", {}).get("arms", [])
            if a.get("mode", "primary") == "primary" and a.get("weight", 0) > 0 and a["version"] != exclude
        ]
        return max(arms, key=lambda a: a["weight"])["version"] if arms else None

    async def latest_dataset_version(self, name: str) -> int:
        found = await self._found("get_dataset", name)
        if not found or found.get("latest_version") is None:
            raise NotFound(f"dataset {name!r} has no versions", field="holdout_dataset")
        return int(found["latest_version"])

    async def artifact(self, model: str, version: int) -> bytes:
        return await self._call("download_artifact", model, version)  # type: ignore[no-any-return]

    async def dataset_version(self, name: str, version: int) -> dict[str, Any]:
        """The registry's record of one dataset version (NotFound when it has none)."""
        try:
            return await self._call("get_dataset_version", name, version)  # type: ignore[no-any-return]
        except FleetAPIError as exc:
            if exc.status == 404:
                raise NotFound(f"dataset {name!r} has no version {version}") from exc
            raise

    async def dataset(self, name: str, version: int) -> pd.DataFrame:
        blob: bytes = await self._call("download_dataset_version", name, version)
        return pd.read_parquet(io.BytesIO(blob))

    async def labelled_rows(self, model: str, *, limit: int = 1_000_000) -> list[dict[str, Any]]:
        """The newest ``limit`` served rows of ``model`` that have a label (none yet: empty)."""
        try:
            return await self._call("labelled_rows", model, limit=limit)  # type: ignore[no-any-return]
        except FleetAPIError as exc:
            if exc.status == 404:  # the lake holds nothing for the model yet
                return []
            raise

    async def register(
        self, name: str, estimator: Any, X: pd.DataFrame, y: pd.Series, **options: Any
    ) -> dict[str, Any]:
        return await self._call("register_sklearn", name, estimator, X, y, **options)  # type: ignore[no-any-return]
