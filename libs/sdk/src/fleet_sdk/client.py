"""A typed HTTP client for ModelFleet.

``Client()`` with no arguments talks to the running stack (``FLEET_REGISTRY_URL``,
``FLEET_DEPLOYER_URL``, ``FLEET_GATEWAY_URL``, ``FLEET_TOKEN``, or the config ``fleet up``
writes); ``client.token`` is the bearer token it uses for every service.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import httpx

from fleet_sdk.config import ClientConfig
from fleet_sdk.errors import FleetAPIError, FleetUnavailable

if TYPE_CHECKING:
    from fleet_sdk.onboarding import EntryResult, OnboardingReport

ProgressCallback = Callable[[int, int], None]  # (bytes sent, total)


class _ProgressReader(io.RawIOBase):
    """A file wrapper that reports how much of it has been read (for upload progress bars)."""

    def __init__(self, raw: BinaryIO, total: int, callback: ProgressCallback | None) -> None:
        self._raw, self._total, self._cb, self._seen = raw, total, callback, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._seen += len(chunk)
        if self._cb:
            self._cb(self._seen, self._total)
        return chunk

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class Client:
    """ModelFleet API client (synchronous, thread-safe per httpx.Client)."""

    def __init__(
        self,
        registry_url: str | None = None,
        token: str | None = None,
        *,
        gateway_url: str | None = None,
        deployer_url: str | None = None,
        monitor_url: str | None = None,
        retrainer_url: str | None = None,
        timeout: float = 120.0,
        config: ClientConfig | None = None,
    ) -> None:
        cfg = config or ClientConfig.load()
        self.registry_url = (registry_url or cfg.registry_url).rstrip("/")
        self.gateway_url = (gateway_url or cfg.urls["gateway_url"]).rstrip("/")
        self.deployer_url = (deployer_url or cfg.urls["deployer_url"]).rstrip("/")
        self.monitor_url = (monitor_url or cfg.urls["monitor_url"]).rstrip("/")
        self.retrainer_url = (retrainer_url or cfg.urls.get("retrainer_url") or "").rstrip("/")
        self.token = token or cfg.token
        self.urls = cfg.urls
        headers = {"User-Agent": "fleet-sdk/0.1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.registry_url, headers=headers, timeout=timeout)
        self._deployer = httpx.Client(base_url=self.deployer_url, headers=headers, timeout=timeout)
        self._gateway = httpx.Client(base_url=self.gateway_url, headers=headers, timeout=timeout)
        self._monitor = httpx.Client(base_url=self.monitor_url, headers=headers, timeout=timeout)
        self._retrainer = httpx.Client(base_url=self.retrainer_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        for http in (self._http, self._deployer, self._gateway, self._monitor, self._retrainer):
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, *, via: httpx.Client | None = None, **kwargs: Any) -> Any:
        response = self._send(method, path, via=via, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _send(
        self, method: str, path: str, *, via: httpx.Client | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The response of a successful call; a FleetAPIError with the problem otherwise."""
        http = via or self._http
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise FleetUnavailable(
                f"cannot reach {http.base_url}: {exc}. Is the stack running? (`fleet up`)"
            ) from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:500]}
            raise FleetAPIError(response.status_code, problem)
        return response

    def _pages(
        self,
        path: str,
        params: dict[str, Any],
        page_size: int = 200,
        *,
        via: httpx.Client | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing (``{items, total, limit, offset}``), a page at a time."""
        offset = 0
        while True:
            page = self._page(path, params, limit=page_size, offset=offset, via=via)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def _page(
        self, path: str, params: dict[str, Any], *, limit: int, offset: int, via: httpx.Client | None = None
    ) -> dict[str, Any]:
        """One page: ``{"items", "total", "limit", "offset"}``; filters that are None are left out."""
        query = {k: _query_value(v) for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._request(
            "GET", path, params={**query, "limit": limit, "offset": offset}, via=via
        )
        return result

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/readyz")
        return result

    # ------------------------------------------------------------------ models

    def create_model(
        self, name: str, team: str, *, description: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "team": team, "description": description, "tags": tags or []}
        return self._request("POST", "/v1/models", json=body)  # type: ignore[no-any-return]

    def get_model(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/models/{name}")  # type: ignore[no-any-return]

    def list_models(
        self,
        *,
        team: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        include_archived: bool = False,
        sort: str = "name",
    ) -> list[dict[str, Any]]:
        """Every model that matches (paged through); ``sort``: name, updated, created, ``-`` desc."""
        params = _model_filters(team, tag, name, include_archived, sort)
        return list(self._pages("/v1/models", params))

    def models_page(
        self,
        *,
        team: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        include_archived: bool = False,
        sort: str = "name",
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of models: ``{"items", "total", "limit", "offset"}``."""
        params = _model_filters(team, tag, name, include_archived, sort)
        return self._page("/v1/models", params, limit=limit, offset=offset)

    def update_model(
        self, name: str, *, description: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"description": description, "tags": tags}.items() if v is not None}
        return self._request("PATCH", f"/v1/models/{name}", json=body)  # type: ignore[no-any-return]

    def archive_model(self, name: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/models/{name}/archive")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ versions

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        return list(self._pages(f"/v1/models/{name}/versions", {}))

    def get_version(self, name: str, version: int | str) -> dict[str, Any]:
        if isinstance(version, str) and not version.isdigit():
            return self._request("GET", f"/v1/models/{name}/aliases/{version}")  # type: ignore[no-any-return]
        return self._request("GET", f"/v1/models/{name}/versions/{version}")  # type: ignore[no-any-return]

    def version_checks(self, name: str, version: int) -> dict[str, Any]:
        """Where a version stands in its model's delivery gate: ``state`` (checking, failed,
        rejected, awaiting_approval, ready; None when not gated), ``reason``, ``checks``, ``reviews``."""
        return self._request("GET", f"/v1/models/{name}/versions/{version}/checks")  # type: ignore[no-any-return]

    def record_checks(self, name: str, version: int, checks: list[dict[str, Any]]) -> dict[str, Any]:
        """Report a version's checks (a token with the ``delivery:checks`` scope: the retrainer's)."""
        return self._request(  # type: ignore[no-any-return]
            "PUT", f"/v1/models/{name}/versions/{version}/checks", json={"checks": checks}
        )

    def review_version(
        self, name: str, version: int, decision: str, comment: str | None = None
    ) -> dict[str, Any]:
        """``approve``, ``reject`` or ``comment`` on a version; returns its delivery state."""
        return self._request(  # type: ignore[no-any-return]
            "POST",
            f"/v1/models/{name}/versions/{version}/reviews",
            json={"decision": decision, "comment": comment},
        )

    def compare_versions(self, name: str, versions: list[int]) -> dict[str, Any]:
        """Versions side by side (the first is the baseline): metrics, hyperparameters, data,
        lineage, checks, and what differs (registry ``GET /v1/models/{name}/compare``)."""
        return self._request(  # type: ignore[no-any-return]
            "GET", f"/v1/models/{name}/compare", params=[("versions", v) for v in versions]
        )

    def gate(self, name: str) -> dict[str, Any]:
        """The model's delivery gate (defaults when none was set)."""
        return self._request("GET", f"/v1/models/{name}/gate")  # type: ignore[no-any-return]

    def set_gate(self, name: str, **gate: Any) -> dict[str, Any]:
        """Set the model's delivery gate: ``primary_metric``, ``min_improvement``, ``approvals``,
        ``latency_budget_ms``, ``holdout_dataset``... (fleet_core.schemas.DeliveryGate)."""
        return self._request("PUT", f"/v1/models/{name}/gate", json=gate)  # type: ignore[no-any-return]

    def wait_for_checks(self, name: str, version: int, *, timeout_s: float = 300.0) -> dict[str, Any]:
        """Poll until a gated version's checks are in (any state but ``checking``); its delivery."""
        deadline = time.monotonic() + timeout_s
        while True:
            delivery = self.version_checks(name, version)
            if delivery["state"] != "checking":
                return delivery
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} v{version}: no checks after {timeout_s:g} s")
            time.sleep(0.5)

    def register_version(
        self,
        name: str,
        artifact: bytes | Path,
        metadata: dict[str, Any],
        *,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Upload an artifact with its metadata (see the API's VersionMetadata)."""
        return self.register_artifact(name, artifact, metadata, progress=progress)[0]

    def register_artifact(
        self,
        name: str,
        artifact: bytes | Path,
        metadata: dict[str, Any],
        *,
        progress: ProgressCallback | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Like :meth:`register_version`, and whether a version was created: False when the model
        already held these bytes and the registry answered with that version (nothing changed)."""
        raw: BinaryIO = open(artifact, "rb") if isinstance(artifact, Path) else io.BytesIO(artifact)  # noqa: SIM115
        try:
            total = raw.seek(0, io.SEEK_END)
            raw.seek(0)
            reader = _ProgressReader(raw, total, progress)
            response = self._send(
                "POST",
                f"/v1/models/{name}/versions",
                data={"metadata": json.dumps(metadata)},
                files={"artifact": ("artifact", reader, "application/octet-stream")},
            )
        finally:
            raw.close()
        return response.json(), response.status_code == 201

    def register_manifest(
        self,
        *paths: Path | str,
        concurrency: int = 8,
        dry_run: bool = False,
        on_result: Callable[[EntryResult], None] | None = None,
    ) -> OnboardingReport:
        """Register every model the manifests at ``paths`` describe (files, or directories of them;
        format in docs/onboarding.md), ``concurrency`` at a time. Each entry lands or fails on its
        own; re-running registers nothing twice. ``dry_run`` only checks the entries locally."""
        from fleet_sdk.onboarding import register_manifest

        return register_manifest(self, *paths, concurrency=concurrency, dry_run=dry_run, on_result=on_result)

    def register_version_from_uri(
        self, name: str, artifact_uri: str, sha256: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        body = {**metadata, "artifact_uri": artifact_uri, "sha256": sha256}
        return self._request("POST", f"/v1/models/{name}/versions/from-uri", json=body)  # type: ignore[no-any-return]

    def update_version(
        self, name: str, version: int, *, description: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"description": description, "tags": tags}.items() if v is not None}
        return self._request("PATCH", f"/v1/models/{name}/versions/{version}", json=body)  # type: ignore[no-any-return]

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        return self._request(  # type: ignore[no-any-return]
            "PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": version}
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", f"/v1/models/{name}/aliases/{alias}")

    def lineage(self, name: str, version: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/models/{name}/versions/{version}/lineage")  # type: ignore[no-any-return]

    def download_artifact(self, name: str, version: int) -> bytes:
        response = self._http.get(f"/v1/models/{name}/versions/{version}/artifact")
        if response.status_code >= 400:
            raise FleetAPIError(response.status_code, response.json())
        return response.content

    # ------------------------------------------------------------------ datasets

    def create_dataset(self, name: str, team: str, *, description: str | None = None) -> dict[str, Any]:
        body = {"name": name, "team": team, "description": description}
        return self._request("POST", "/v1/datasets", json=body)  # type: ignore[no-any-return]

    def get_dataset(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/datasets/{name}")  # type: ignore[no-any-return]

    def list_datasets(self, *, team: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/v1/datasets", {"team": team} if team else {}))

    def upload_dataset_version(
        self,
        name: str,
        data: bytes,
        *,
        row_count: int,
        schema: dict[str, Any] | None = None,
        format: str = "parquet",
        parent_version: int | None = None,
        description: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        meta = {
            "row_count": row_count,
            "schema": schema or {},
            "format": format,
            "parent_version": parent_version,
            "description": description,
        }
        reader = _ProgressReader(io.BytesIO(data), len(data), progress)
        return self._request(  # type: ignore[no-any-return]
            "POST",
            f"/v1/datasets/{name}/versions",
            data={"metadata": json.dumps(meta)},
            files={"file": (f"data.{format}", reader, "application/octet-stream")},
        )

    def list_dataset_versions(self, name: str) -> list[dict[str, Any]]:
        return list(self._pages(f"/v1/datasets/{name}/versions", {}))

    def get_dataset_version(self, name: str, version: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/datasets/{name}/versions/{version}")  # type: ignore[no-any-return]

    def download_dataset_version(self, name: str, version: int) -> bytes:
        response = self._http.get(f"/v1/datasets/{name}/versions/{version}/content")
        if response.status_code >= 400:
            raise FleetAPIError(response.status_code, response.json())
        return response.content

    # ------------------------------------------------------------------ admin

    def audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        service: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The platform's audit log: every service's writes and refusals, newest first."""
        filters = {"actor": actor, "action": action, "service": service, "outcome": outcome}
        params = {k: v for k, v in filters.items() if v}
        page = self._request("GET", "/v1/audit", params={**params, "limit": limit})
        return page["items"]  # type: ignore[no-any-return]

    def issue_token(
        self,
        subject: str,
        role: str,
        teams: list[str],
        *,
        ttl_days: float | None = 30,
        scopes: list[str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "subject": subject,
            "role": role,
            "teams": teams,
            "ttl_days": ttl_days,
            "scopes": scopes or [],
        }
        return self._request("POST", "/v1/tokens", json=body)  # type: ignore[no-any-return]

    def tokens(self) -> list[dict[str, Any]]:
        """Every recorded token (never the secret itself), newest first."""
        return list(self._pages("/v1/tokens", {}))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/tokens/{token_id}")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ webhooks (registry)

    def add_webhook(
        self, team: str, url: str, events: list[str], *, description: str | None = None
    ) -> dict[str, Any]:
        """Subscribe ``url`` to ``team``'s ``events`` (topic names); the answer's ``secret`` (shown
        only here) is what the receiver verifies signatures with."""
        body = {"team": team, "url": url, "events": events, "description": description}
        return self._request("POST", "/v1/webhooks", json=body)  # type: ignore[no-any-return]

    def webhooks(self, team: str | None = None) -> list[dict[str, Any]]:
        params = {"team": team} if team else {}
        return self._request("GET", "/v1/webhooks", params=params)  # type: ignore[no-any-return]

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/webhooks/{webhook_id}")  # type: ignore[no-any-return]

    def remove_webhook(self, webhook_id: str) -> None:
        self._request("DELETE", f"/v1/webhooks/{webhook_id}")

    def test_webhook(self, webhook_id: str) -> dict[str, Any]:
        """Queue a signed ``io.modelfleet.webhook.test.v1`` event; the queued delivery."""
        return self._request("POST", f"/v1/webhooks/{webhook_id}/test")  # type: ignore[no-any-return]

    def webhook_deliveries(
        self, webhook_id: str, *, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset, **({"state": state} if state else {})}
        return self._request(  # type: ignore[no-any-return]
            "GET", f"/v1/webhooks/{webhook_id}/deliveries", params=params
        )

    # ------------------------------------------------------------------ deployments (deployer)

    def deploy(
        self,
        name: str,
        version: int | None = None,
        *,
        quota: dict[str, Any] | None = None,
        wait_s: float = 10.0,
    ) -> dict[str, Any]:
        """Deploy a version (default: the latest) and route all traffic to it (strategy ``direct``).
        A ``quota`` (num_cpus, memory_mb, min_replicas, max_replicas, target_ongoing_requests)
        gives it a dedicated deployment instead of a place in the shared pool. Returns once the
        gateway routes by the new table (or after ``wait_s``)."""
        body = {"model": name, "version": version, "quota": quota}
        result: dict[str, Any] = self._request("POST", "/v1/deployments", json=body, via=self._deployer)
        self.wait_until_routed(name, result["route"]["table"]["revision"], timeout_s=wait_s)
        return result

    def rollback(self, name: str, *, wait_s: float = 10.0) -> dict[str, Any]:
        """Route all traffic back to the previous stable version. Returns once the gateway routes
        by the new table, so the next request is answered by that version."""
        result: dict[str, Any] = self._request("POST", f"/v1/models/{name}/rollback", via=self._deployer)
        self.wait_until_routed(name, self.routes(name)["table"]["revision"], timeout_s=wait_s)
        return result

    def wait_until_routed(self, name: str, revision: int, *, timeout_s: float = 10.0) -> bool:
        """Wait until the gateway routes ``name`` by route-table ``revision`` or newer; False when it
        did not within ``timeout_s`` (gateway away, or several gateways behind a balancer)."""
        deadline = time.monotonic() + timeout_s
        while not self._gateway_routes_by(name, revision):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _gateway_routes_by(self, name: str, revision: int) -> bool:
        """Whether the gateway holds ``revision`` (or newer) of the model's table and can serve
        every version it names. A gateway still starting or restarting counts as not yet."""
        try:
            response = self._gateway.get(f"/v2/models/{name}")
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        params = response.json().get("parameters") or {}
        current = params.get("route_revision")
        return current is not None and current >= revision and bool(params.get("route_complete", True))

    def deployments(
        self,
        *,
        team: str | None = None,
        state: str | None = None,
        idle: bool | None = None,
        placement: str | None = None,
        name: str | None = None,
        sort: str = "name",
        include_retired: bool = False,
    ) -> list[dict[str, Any]]:
        """Every deployed version that matches, paged through. Filters combine: ``state`` (pending,
        deploying, ready, failed, retired), ``idle``, ``placement`` (pool or dedicated), ``name``
        (model name contains); ``sort``: name, updated, last_request, traffic (``-`` descending)."""
        params = _deployment_filters(team, state, idle, placement, name, sort, include_retired)
        return list(self._pages("/v1/deployments", params, via=self._deployer))

    def deployments_page(
        self,
        *,
        team: str | None = None,
        state: str | None = None,
        idle: bool | None = None,
        placement: str | None = None,
        name: str | None = None,
        sort: str = "name",
        include_retired: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of deployments: ``{"items", "total", "limit", "offset"}`` (filters as
        :meth:`deployments`)."""
        params = _deployment_filters(team, state, idle, placement, name, sort, include_retired)
        return self._page("/v1/deployments", params, limit=limit, offset=offset, via=self._deployer)

    def deployment(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/deployments/{name}", via=self._deployer)  # type: ignore[no-any-return]

    def pool(self) -> dict[str, Any]:
        """The shared pool: each replica's model budget, loaded versions with their bytes, evictions."""
        return self._request("GET", "/v1/pool", via=self._deployer)  # type: ignore[no-any-return]

    def local_models(self) -> dict[str, Any]:
        """The small pool models the gateway process serves itself, with their bytes and
        calls, and the ones it will not (the gateway's ``GET /v1/local-models``)."""
        return self._request("GET", "/v1/local-models", via=self._gateway)  # type: ignore[no-any-return]

    def routes(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/routes/{name}", via=self._deployer)  # type: ignore[no-any-return]

    def set_routes(self, name: str, arms: list[dict[str, Any]], *, wait_s: float = 10.0) -> dict[str, Any]:
        """Set an explicit route table: ``[{"version": 1, "weight": 90}, {"version": 2, "weight": 10},
        {"version": 3, "weight": 0, "mode": "shadow"}]``; ``sticky`` arms assign by routing key.
        Returns once the gateway routes by it (or after ``wait_s``)."""
        result: dict[str, Any] = self._request(
            "PUT", f"/v1/routes/{name}", json={"arms": arms}, via=self._deployer
        )
        self.wait_until_routed(name, result["table"]["revision"], timeout_s=wait_s)
        return result

    def set_batching(
        self,
        name: str,
        *,
        max_rows: int | None = None,
        max_delay_ms: float | None = None,
        max_inflight: int | None = None,
        wait_s: float = 10.0,
    ) -> dict[str, Any]:
        """How gateways batch ``name``'s requests (``max_rows=1``: not at all); a setting left
        None takes the gateway's default. Returns once the gateway has the new table (or after
        ``wait_s``)."""
        body = {"max_rows": max_rows, "max_delay_ms": max_delay_ms, "max_inflight": max_inflight}
        result: dict[str, Any] = self._request(
            "PUT",
            f"/v1/routes/{name}/batching",
            json={k: v for k, v in body.items() if v is not None},
            via=self._deployer,
        )
        self.wait_until_routed(name, result["table"]["revision"], timeout_s=wait_s)
        return result

    def reset_batching(self, name: str, *, wait_s: float = 10.0) -> dict[str, Any]:
        """Batch ``name``'s requests with the gateways' defaults again."""
        result: dict[str, Any] = self._request("DELETE", f"/v1/routes/{name}/batching", via=self._deployer)
        self.wait_until_routed(name, result["table"]["revision"], timeout_s=wait_s)
        return result

    def request_rollout(
        self, name: str, version: int, strategy: str = "direct", **options: Any
    ) -> dict[str, Any]:
        body = {"model": name, "version": version, "strategy": strategy, **options}
        return self._request("POST", "/v1/rollouts", json=body, via=self._deployer)  # type: ignore[no-any-return]

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        """One rollout: phase, step, reason and, for progressive ones, progress and the latest verdict."""
        return self._request("GET", f"/v1/rollouts/{rollout_id}", via=self._deployer)  # type: ignore[no-any-return]

    def rollout_command(self, rollout_id: str, command: str) -> dict[str, Any]:
        """``pause``, ``resume``, ``promote`` or ``abort`` a progressive rollout."""
        return self._request("POST", f"/v1/rollouts/{rollout_id}/{command}", via=self._deployer)  # type: ignore[no-any-return]

    def rollouts(
        self,
        model: str | None = None,
        *,
        team: str | None = None,
        phase: str | None = None,
        strategy: str | None = None,
        sort: str = "-created",
    ) -> list[dict[str, Any]]:
        """Every rollout that matches, newest first unless ``sort`` (created, updated, model; ``-``
        descending) says otherwise, paged through."""
        params = {"model": model, "team": team, "phase": phase, "strategy": strategy, "sort": sort}
        return list(self._pages("/v1/rollouts", params, via=self._deployer))

    def rollouts_page(
        self,
        model: str | None = None,
        *,
        team: str | None = None,
        phase: str | None = None,
        strategy: str | None = None,
        sort: str = "-created",
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of rollouts: ``{"items", "total", "limit", "offset"}``."""
        params = {"model": model, "team": team, "phase": phase, "strategy": strategy, "sort": sort}
        return self._page("/v1/rollouts", params, limit=limit, offset=offset, via=self._deployer)

    # ------------------------------------------------------------------ inference (gateway)

    def predict(
        self,
        name: str,
        rows: Any,
        *,
        version: int | None = None,
        routing_key: str | None = None,
    ) -> dict[str, Any]:
        """Predict through the gateway. ``rows``: one ``{feature: value}`` dict, a list of them, or a
        pandas DataFrame. Returns ``{"model", "version", "predictions", "request_id", "receipt"}``;
        pass ``request_id`` and ``receipt`` to :meth:`feedback` (any gateway instance accepts it)."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict("records")
        path = f"/v2/models/{name}/versions/{version}/infer" if version else f"/v2/models/{name}/infer"
        headers = {"X-Fleet-Routing-Key": routing_key} if routing_key else {}
        payload = json.loads(json.dumps({"inputs": rows}, default=_json_default))
        response = self._send("POST", path, json=payload, headers=headers, via=self._gateway)
        answer: dict[str, Any] = response.json()
        answer["receipt"] = response.headers.get("X-Fleet-Feedback-Receipt")
        return answer

    def feedback(
        self,
        request_id: str,
        model: str,
        labels: list[Any],
        *,
        version: int | None = None,
        receipt: str | None = None,
    ) -> dict[str, Any]:
        """Send ground truth for an earlier prediction (one label per row). ``receipt`` (from
        :meth:`predict`) proves the prediction to any gateway instance, after restarts too."""
        body = {"request_id": request_id, "model": model, "labels": labels, "version": version}
        if receipt:
            body["receipt"] = receipt
        return self._request("POST", "/v1/feedback", json=body, via=self._gateway)  # type: ignore[no-any-return]

    def record_outcome(
        self,
        model: str,
        kpi: str,
        value: float,
        *,
        request_id: str | None = None,
        routing_key: str | None = None,
        receipt: str | None = None,
    ) -> dict[str, Any]:
        """A business outcome (``kpi``: conversion, revenue, ...) for a served request or for the
        routing key (a user) it was routed by; an A/B rollout started with ``kpi=`` that name is
        decided on these (``POST /v1/outcomes``)."""
        body = {
            "model": model,
            "kpi": kpi,
            "value": value,
            "request_id": request_id,
            "routing_key": routing_key,
        }
        if receipt:
            body["receipt"] = receipt
        return self._request("POST", "/v1/outcomes", json=body, via=self._gateway)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ monitoring (monitor)

    def overview(
        self,
        *,
        q: str | None = None,
        model: str | None = None,
        team: str | None = None,
        state: str | None = None,
        alerting: bool | None = None,
        drifting: bool | None = None,
        rollout: bool | None = None,
        sort: str = "name",
        order: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of the fleet over the live window: each model's traffic, latency, errors, drift,
        alerts and rollout. ``q`` matches names containing it, ``model`` one exact name; ``state`` is
        serving, idle or "not deployed"; ``alerting``, ``drifting`` and ``rollout`` (in progress)
        keep only the models with (True) or without (False) it; ``sort`` by name, rps, error_rate,
        latency_p95, drift or alerts (numbers worst first unless ``order="asc"``). The answer has
        ``models`` (this page), ``total`` (matching) and ``total_models`` (all the caller sees)."""
        params = {
            "q": q,
            "model": model,
            "team": team,
            "state": state,
            "alerting": alerting,
            "drifting": drifting,
            "rollout": rollout,
            "sort": sort,
            "order": order,
            "limit": limit,
            "offset": offset,
        }
        query = {
            k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None
        }
        return self._request("GET", "/v1/overview", params=query, via=self._monitor)  # type: ignore[no-any-return]

    def iter_overview(self, *, page_size: int = 500, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every model matching ``filters`` (the keywords of :meth:`overview`), a page at a time."""
        offset = 0
        while True:
            page = self.overview(limit=page_size, offset=offset, **filters)
            yield from page["models"]
            offset += len(page["models"])
            if not page["models"] or offset >= page["total"]:
                return

    def model_health(self, name: str) -> dict[str, Any]:
        """One model in depth: versions and lineage, time series, drift per feature, rollout, alerts."""
        return self._request("GET", f"/v1/models/{name}", via=self._monitor)  # type: ignore[no-any-return]

    def alerts(
        self,
        *,
        state: str | None = None,
        model: str | None = None,
        kind: str | None = None,
        team: str | None = None,
        severity: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first (``state``: firing or resolved; ``kind``: drift, anomaly, rollout;
        ``severity``: info, warning, critical), a page of ``limit`` after ``offset``."""
        given = {"state": state, "model": model, "kind": kind, "team": team, "severity": severity}
        params = {k: v for k, v in {**given, "limit": limit, "offset": offset}.items() if v}
        return self._request("GET", "/v1/alerts", params=params, via=self._monitor)  # type: ignore[no-any-return]

    def monitor_config(self, name: str, **thresholds: Any) -> dict[str, Any]:
        """A model's monitoring thresholds; with keyword arguments, replace its overrides first
        (e.g. ``drift_psi=0.3, drift_window_rows=1000``)."""
        if thresholds:
            return self._request("PUT", f"/v1/models/{name}/config", json=thresholds, via=self._monitor)  # type: ignore[no-any-return]
        return self._request("GET", f"/v1/models/{name}/config", via=self._monitor)  # type: ignore[no-any-return]

    def labelled_rows(
        self, name: str, *, since: str | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Served rows joined with their labels, from the inference lake."""
        params: dict[str, Any] = {"limit": limit, **({"since": since} if since else {})}
        return self._request("GET", f"/v1/lake/{name}/labelled", params=params, via=self._monitor)  # type: ignore[no-any-return]

    def erase_subject(self, subject: str, *, model: str | None = None) -> dict[str, Any]:
        """Right to erasure (admins): remove a data subject's served rows and their labels from the
        inference lake, from every model or only ``model``. ``subject`` is the raw id the gateway saw
        in a PII field or as the routing key, or its ``sha256:<hex>`` form. Returns the rows removed
        and the partitions rewritten."""
        params = {"model": model} if model else {}
        path = f"/v1/subjects/{quote(subject, safe='')}"  # a raw id may hold '/', '?' or '#'
        return self._request("DELETE", path, params=params, via=self._monitor)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ retraining (retrainer)

    def retrain(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Retrain a model now; returns ``{"action", "reason", "job"}`` (a second job for the same
        model is refused with the reason)."""
        body = {"model": name, **({"version": version} if version else {})}
        return self._request("POST", "/v1/jobs", json=body, via=self._retrainer)  # type: ignore[no-any-return]

    def jobs(
        self,
        model: str | None = None,
        state: str | None = None,
        *,
        team: str | None = None,
        sort: str = "-created",
    ) -> list[dict[str, Any]]:
        """Every retraining job that matches, newest first unless ``sort`` (created, model; ``-``
        descending) says otherwise, paged through."""
        params = {"model": model, "state": state, "team": team, "sort": sort}
        return list(self._pages("/v1/jobs", params, via=self._retrainer))

    def jobs_page(
        self,
        model: str | None = None,
        state: str | None = None,
        *,
        team: str | None = None,
        sort: str = "-created",
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of jobs: ``{"items", "total", "limit", "offset"}``."""
        params = {"model": model, "state": state, "team": team, "sort": sort}
        return self._page("/v1/jobs", params, limit=limit, offset=offset, via=self._retrainer)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}", via=self._retrainer)  # type: ignore[no-any-return]

    def job_logs(self, job_id: str) -> list[str]:
        return self._request("GET", f"/v1/jobs/{job_id}/logs", via=self._retrainer)["lines"]  # type: ignore[no-any-return]

    def retrain_policy(self, name: str, **policy: Any) -> dict[str, Any]:
        """A model's retraining policy; with keyword arguments, replace it first (e.g.
        ``cooldown_s=600, min_new_labelled_rows=200``)."""
        if policy:
            return self._request("PUT", f"/v1/policies/{name}", json=policy, via=self._retrainer)  # type: ignore[no-any-return]
        return self._request("GET", f"/v1/policies/{name}", via=self._retrainer)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ scikit-learn

    def register_sklearn(
        self, name: str, estimator: Any, X_train: Any, y_train: Any = None, **options: Any
    ) -> dict[str, Any]:
        """Register a fitted scikit-learn estimator: infers the signature, profiles the training
        data, computes metrics, records the recipe and the training dataset, and uploads it.
        See ``fleet_sdk.sklearn.register_sklearn`` for the options."""
        from fleet_sdk.sklearn import register_sklearn

        return register_sklearn(self, name, estimator, X_train, y_train, **options)


def _query_value(value: Any) -> Any:
    """Booleans as the API spells them in a query string."""
    return str(value).lower() if isinstance(value, bool) else value


def _model_filters(
    team: str | None, tag: str | None, name: str | None, include_archived: bool, sort: str
) -> dict[str, Any]:
    return {"team": team, "tag": tag, "name": name, "include_archived": include_archived, "sort": sort}


def _deployment_filters(
    team: str | None,
    state: str | None,
    idle: bool | None,
    placement: str | None,
    name: str | None,
    sort: str,
    include_retired: bool,
) -> dict[str, Any]:
    return {
        "team": team,
        "state": state,
        "idle": idle,
        "placement": placement,
        "name": name,
        "sort": sort,
        "include_retired": include_retired,
    }


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (from DataFrames) as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
