"""Retrainer test support: the retrainer in-process, and the rest of the fleet as its SDK client sees
it, in memory: a registry (models, versions with real skops artifacts, datasets with parquet content,
their teams) and the monitor's lake of labelled rows. The retrainer's own ``Fleet`` code runs
unchanged over it, and so does the SDK's ``register_sklearn`` when a winner is registered: what it
would send the registry is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import skops.io as sio
from asgi_lifespan import LifespanManager
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import Topic, parse_event
from fleet_retrainer.app import create_app
from fleet_retrainer.engine import FINISHED, RetrainController
from fleet_retrainer.models import MESSAGING
from fleet_retrainer.platform import SERVICE_SUBJECT, Fleet
from fleet_retrainer.settings import RetrainerSettings
from fleet_retrainer.trainer import LocalTrainer
from fleet_sdk.errors import FleetAPIError
from fleet_sdk.sklearn import make_recipe, register_sklearn
from support import backend

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
FEATURES = ["income", "age"]
SIGNATURE = {
    "inputs": [
        {"name": "income", "type": "float", "minimum": 0.0, "maximum": 500.0, "pii": True},
        {"name": "age", "type": "float", "minimum": 18.0, "maximum": 99.0},
    ],
    "outputs": [{"name": "prediction", "type": "int"}],
}
QUOTA = {
    "num_cpus": 0.5,
    "memory_mb": 512,
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 2.0,
    "capacity_class": "on_demand",
}


def population(n: int, *, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"income": rng.normal(100 + 50 * shift, 20, n), "age": rng.normal(40 + 10 * shift, 8, n)}
    )
    frame["label"] = (frame["income"] / 20 + frame["age"] / 8 > 10 + 5 * shift).astype(int)
    return frame


def not_found(what: str) -> FleetAPIError:
    return FleetAPIError(404, {"title": "Not found", "detail": f"no {what}"})


@dataclass
class FakeRegistry:
    """What the retrainer's SDK client reads and writes, in memory."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[tuple[str, int], bytes] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_content: dict[tuple[str, int], bytes] = field(default_factory=dict)
    dataset_creators: dict[tuple[str, int], str] = field(default_factory=dict)
    labelled: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    registered: list[dict[str, Any]] = field(default_factory=list)
    """Metadata of every version the retrainer registered."""
    dataset_writes: list[tuple[str, str]] = field(default_factory=list)
    """(dataset, "create" | "upload") for every dataset write."""
    after_register: Callable[[], None] | None = None
    """Called (in the SDK's worker thread) once a version is stored, before the registry answers."""

    def add_dataset(
        self, name: str, team: str, frame: pd.DataFrame, *, created_by: str = "alice"
    ) -> dict[str, Any]:
        self.datasets.setdefault(name, {"name": name, "team": team, "latest_version": 0})
        ds = self.datasets[name]
        ds["latest_version"] += 1
        self.dataset_creators[(name, ds["latest_version"])] = created_by
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        self.dataset_content[(name, ds["latest_version"])] = buf.getvalue()
        return {"dataset": name, "version": ds["latest_version"]}

    def add_champion(
        self,
        model: str,
        team: str,
        *,
        dataset: str | None = None,
        dataset_team: str | None = None,
        estimator: Any = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Version 1 of ``model``, trained on its dataset (of ``dataset_team``, default ``team``)."""
        base = population(300, shift=0, seed=1)
        fitted = (estimator or LogisticRegression()).fit(base[FEATURES], base["label"])
        blob = sio.dumps(fitted)
        ref = self.add_dataset(dataset or f"{model}-training", dataset_team or team, base)
        self.models[model] = {"name": model, "team": team, "latest_version": 1}
        version = {
            "model": model,
            "version": 1,
            "team": team,
            "flavor": "sklearn",
            "task": "classification",
            "artifact_uri": f"file:///artifacts/{model}/1/model.skops",
            "sha256": hashlib.sha256(blob).hexdigest(),
            "size_bytes": len(blob),
            "signature": SIGNATURE,
            "recipe": make_recipe(LogisticRegression(), "classification", "label").model_dump(mode="json"),
            "dataset_version": ref,
            "quota": QUOTA,
            "untrusted_types": [],
            "example_input": None,
            **overrides,
        }
        self.versions[(model, 1)] = version
        self.artifacts[(model, 1)] = blob
        traffic = population(200, shift=1, seed=2)
        self.labelled[model] = [
            {
                "timestamp": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}",
                "inputs": row[FEATURES].to_json(),
                "label": str(int(row["label"])),
            }
            for i, (_, row) in enumerate(traffic.iterrows())
        ]
        return version


class FakeClient:
    """The SDK client's methods the retrainer (and ``register_sklearn``) call, over ``FakeRegistry``."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.r = registry

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_model(self, name: str) -> dict[str, Any]:
        if name not in self.r.models:
            raise not_found(f"model {name}")
        return dict(self.r.models[name])

    def get_version(self, name: str, version: int | str) -> dict[str, Any]:
        try:
            return dict(self.r.versions[(name, int(version))])
        except (KeyError, ValueError):
            raise not_found(f"version {name} v{version}") from None

    def download_artifact(self, name: str, version: int) -> bytes:
        return self.r.artifacts[(name, version)]

    def get_dataset(self, name: str) -> dict[str, Any]:
        if name not in self.r.datasets:
            raise not_found(f"dataset {name}")
        return dict(self.r.datasets[name])

    def download_dataset_version(self, name: str, version: int) -> bytes:
        return self.r.dataset_content[(name, version)]

    def labelled_rows(
        self, name: str, *, limit: int = 10_000, since: str | None = None
    ) -> list[dict[str, Any]]:
        return self.r.labelled.get(name, [])[-limit:]

    def create_model(self, name: str, team: str, **_: Any) -> dict[str, Any]:
        self.r.models[name] = {"name": name, "team": team, "latest_version": None}
        return dict(self.r.models[name])

    def create_dataset(self, name: str, team: str, **_: Any) -> dict[str, Any]:
        self.r.dataset_writes.append((name, "create"))
        self.r.datasets[name] = {"name": name, "team": team, "latest_version": 0}
        return dict(self.r.datasets[name])

    def upload_dataset_version(self, name: str, data: bytes, **_: Any) -> dict[str, Any]:
        self.r.dataset_writes.append((name, "upload"))
        frame = pd.read_parquet(io.BytesIO(data))
        return self.r.add_dataset(name, self.r.datasets[name]["team"], frame, created_by=SERVICE_SUBJECT)

    def get_dataset_version(self, name: str, version: int) -> dict[str, Any]:
        if (name, version) not in self.r.dataset_content:
            raise not_found(f"dataset {name} v{version}")
        return {"dataset": name, "version": version, "created_by": self.r.dataset_creators[(name, version)]}

    def register_sklearn(
        self, name: str, estimator: Any, X: Any, y: Any = None, **options: Any
    ) -> dict[str, Any]:
        return register_sklearn(self, name, estimator, X, y, **options)  # type: ignore[arg-type]

    def register_version(
        self, name: str, artifact: bytes, metadata: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        model = self.r.models[name]
        number = (model["latest_version"] or 0) + 1
        model["latest_version"] = number
        self.r.registered.append({"model": name, "team": model["team"], **metadata})
        ref = metadata["dataset_version"]
        content = self.r.dataset_content[(ref["dataset"], ref["version"])]
        metadata = {
            **metadata,
            "dataset_version": {**ref, "content_hash": hashlib.sha256(content).hexdigest()},
        }
        self.r.versions[(name, number)] = {
            **metadata,
            "model": name,
            "version": number,
            "team": model["team"],
            "created_by": SERVICE_SUBJECT,  # only the retrainer's client registers here
        }
        if self.r.after_register is not None:
            self.r.after_register()
        return {**metadata, "model": name, "version": number, "team": model["team"]}

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        return [dict(v) for (model, _), v in sorted(self.r.versions.items()) if model == name]


class FakeFleet(Fleet):
    """The retrainer's real ``Fleet`` over ``FakeRegistry`` instead of HTTP."""

    def __init__(self, registry: FakeRegistry, tokens: TokenAuthority) -> None:
        super().__init__("http://registry.invalid", "http://monitor.invalid", tokens)
        self.registry = registry

    def _client(self, scopes: list[str] | None = None) -> Any:
        return FakeClient(self.registry)


async def rollouts_requested(h: RetrainerHarness) -> list[tuple[str, int]]:
    """(model, version) of every ``rollout.requested`` the retrainer staged in its outbox."""
    t = MESSAGING.outbox
    async with h.controller.store.db.sessions() as s:
        rows = (await s.execute(select(t.c.payload).where(t.c.topic == Topic.ROLLOUT_REQUESTED.value))).all()
    return [
        (e.data.model, e.data.version)
        for e in (parse_event(Topic.ROLLOUT_REQUESTED, r.payload) for r in rows)
    ]


@dataclass
class RetrainerHarness:
    client: httpx.AsyncClient
    app: Any
    registry: FakeRegistry
    tokens: TokenAuthority

    @property
    def controller(self) -> RetrainController:
        return self.app.state.controller  # type: ignore[no-any-return]

    def auth(self, role: Role = Role.ADMIN, teams: list[str] | None = None) -> dict[str, str]:
        token, _, _ = self.tokens.issue(f"{role}-user", role, teams if teams is not None else ["*"])
        return {"Authorization": f"Bearer {token}"}

    async def all_jobs(self) -> list[dict[str, Any]]:
        """Every job, as an admin lists them."""
        r = await self.client.get("/v1/jobs", params={"limit": 500}, headers=self.auth())
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == len(page["items"]), "more jobs than one page: page through them"
        return page["items"]  # type: ignore[no-any-return]

    async def finished(self, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The job once it has ended (registered, rejected or failed)."""
        for _ in range(int(timeout_s / 0.1)):
            job = (await self.client.get(f"/v1/jobs/{job_id}", headers=self.auth())).json()
            if job["state"] in FINISHED:
                return job  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")


@asynccontextmanager
async def running_retrainer(tmp: Path, *, database_url: str | None = None) -> AsyncIterator[RetrainerHarness]:
    """The retrainer in-process on ``database_url`` (default: the test backend's), with no broker
    (events stay in the outbox), training in a worker thread, over a fresh ``FakeRegistry``."""
    settings = RetrainerSettings(
        home=tmp,
        database_url=database_url or backend.database_url(tmp, "retrainer"),
        kafka_bootstrap="127.0.0.1:1",
        jwt_secret=SECRET,
        consume_events=False,
        outbox_poll_interval_s=0.2,
    )
    app = create_app(settings, trainer=LocalTrainer())
    registry = FakeRegistry()
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        app.state.controller.fleet = FakeFleet(registry, app.state.tokens)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://retrainer") as client:
            yield RetrainerHarness(client, app, registry, app.state.tokens)
