"""Run the registry app in-process for tests, with tokens for each role."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skops.io as sio
from asgi_lifespan import LifespanManager
from sklearn.linear_model import LogisticRegression

from fleet_core.auth import Role, TokenAuthority
from fleet_registry.app import create_app
from fleet_registry.settings import RegistrySettings
from support import backend

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class RegistryHarness:
    client: httpx.AsyncClient
    app: Any
    settings: RegistrySettings
    tokens: TokenAuthority

    def auth(
        self, role: Role = Role.ADMIN, teams: list[str] | None = None, subject: str | None = None
    ) -> dict[str, str]:
        token, _, _ = self.tokens.issue(
            subject or f"{role}-user", role, teams if teams is not None else ["*"]
        )
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_registry(
    tmp: Path,
    *,
    database_url: str | None = None,
    kafka_bootstrap: str = "127.0.0.1:1",
    artifact_uri: str | None = None,
    **overrides: Any,
) -> AsyncIterator[RegistryHarness]:
    storage = {} if artifact_uri or "s3_endpoint" in overrides else backend.artifact_settings()
    settings = RegistrySettings(
        home=tmp,
        database_url=database_url or backend.database_url(tmp, "registry"),
        kafka_bootstrap=kafka_bootstrap,
        jwt_secret=SECRET,
        outbox_poll_interval_s=0.2,
        **{
            "artifact_uri": artifact_uri,
            # Without a broker there are no other services' audit entries to consume.
            "consume_events": kafka_bootstrap != "127.0.0.1:1",
            **storage,
            **overrides,
        },
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield RegistryHarness(client, app, settings, app.state.tokens)


def skops_model(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 2))
    return sio.dumps(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)))


SIGNATURE = {
    "inputs": [
        {"name": "x0", "type": "float", "minimum": -10, "maximum": 10},
        {"name": "x1", "type": "float"},
    ],
    "outputs": [{"name": "label", "type": "int"}],
}


def version_metadata(**extra: Any) -> dict[str, Any]:
    return {
        "flavor": "sklearn",
        "task": "classification",
        "signature": SIGNATURE,
        "metrics": {"accuracy": 0.9},
        **extra,
    }


async def upload_version(
    h: RegistryHarness,
    model: str,
    headers: dict[str, str],
    *,
    artifact: bytes | None = None,
    **meta: Any,
) -> httpx.Response:
    return await h.client.post(
        f"/v1/models/{model}/versions",
        data={"metadata": json.dumps(version_metadata(**meta))},
        files={"artifact": ("model.skops", io.BytesIO(artifact if artifact is not None else skops_model()))},
        headers=headers,
    )
