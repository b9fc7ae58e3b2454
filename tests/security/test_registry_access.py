"""The registry's access matrix: every route, against no token, another team, too low a role."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

from fleet_core.auth import Role
from security.matrix import SERVICE_ROUTES, TEAM, Access, MatrixRun, admin, authenticated, listing, team
from support.registry import running_registry, skops_model, version_metadata

MODEL, DATASET = f"{TEAM}-churn", f"{TEAM}-data"
_names = itertools.count()


def _upload() -> dict[str, Any]:
    return {
        "data": {"metadata": json.dumps(version_metadata())},
        "files": {"artifact": ("model.skops", io.BytesIO(skops_model()))},
    }


def _dataset_file() -> dict[str, Any]:
    return {
        "data": {"metadata": json.dumps({"row_count": 1, "format": "csv"})},
        "files": {"file": ("d.csv", io.BytesIO(f"x0\n{next(_names)}\n".encode()))},
    }


def table(
    v1: dict[str, Any], d1: dict[str, Any], token_id: str, hook_id: str
) -> dict[tuple[str, str], Access]:
    m, d = f"/v1/models/{MODEL}", f"/v1/datasets/{DATASET}"
    from_uri = {**version_metadata(), "artifact_uri": v1["artifact_uri"], "sha256": v1["sha256"]}
    dataset_from_uri = {"uri": d1["uri"], "content_hash": d1["content_hash"], "row_count": 1}
    return {
        **SERVICE_ROUTES,
        ("GET", "/v1/audit"): admin(),
        ("POST", "/v1/tokens"): admin(
            request=lambda: {"json": {"subject": "ci", "role": "viewer", "teams": [TEAM]}}
        ),
        ("GET", "/v1/tokens"): admin(),
        ("GET", "/v1/tokens/revoked"): authenticated(),
        ("POST", "/v1/models"): team(
            Role.SCIENTIST, request=lambda: {"json": {"name": f"{TEAM}-m{next(_names)}", "team": TEAM}}
        ),
        ("GET", "/v1/models"): listing(),
        ("GET", "/v1/models/{name}"): team(Role.VIEWER, m),
        ("PATCH", "/v1/models/{name}"): team(Role.SCIENTIST, m, lambda: {"json": {"description": "x"}}),
        ("GET", "/v1/models/{name}/aliases/{alias}"): team(Role.VIEWER, f"{m}/aliases/champion"),
        ("PUT", "/v1/models/{name}/aliases/{alias}"): team(
            Role.SCIENTIST, f"{m}/aliases/champion", lambda: {"json": {"version": 1}}
        ),
        ("POST", "/v1/models/{name}/versions"): team(Role.SCIENTIST, f"{m}/versions", _upload),
        ("POST", "/v1/models/{name}/versions/from-uri"): team(
            Role.SCIENTIST, f"{m}/versions/from-uri", lambda: {"json": from_uri}
        ),
        ("GET", "/v1/models/{name}/versions"): team(Role.VIEWER, f"{m}/versions"),
        ("GET", "/v1/models/{name}/versions/{version}"): team(Role.VIEWER, f"{m}/versions/1"),
        ("PATCH", "/v1/models/{name}/versions/{version}"): team(
            Role.SCIENTIST, f"{m}/versions/1", lambda: {"json": {"description": "y"}}
        ),
        ("GET", "/v1/models/{name}/versions/{version}/artifact"): team(
            Role.VIEWER, f"{m}/versions/1/artifact"
        ),
        ("GET", "/v1/models/{name}/versions/{version}/lineage"): team(Role.VIEWER, f"{m}/versions/1/lineage"),
        ("GET", "/v1/models/{name}/gate"): team(Role.VIEWER, f"{m}/gate"),
        ("GET", "/v1/models/{name}/compare"): team(Role.VIEWER, f"{m}/compare?versions=1&versions=2"),
        ("PUT", "/v1/models/{name}/gate"): team(
            Role.DEPLOYER, f"{m}/gate", lambda: {"json": {"approvals": 1}}
        ),
        ("GET", "/v1/models/{name}/versions/{version}/checks"): team(Role.VIEWER, f"{m}/versions/1/checks"),
        # Checks come from the checker's token (the delivery:checks scope) or an admin, never a
        # person of the team: a deployer of every team is refused as one without the scope.
        ("PUT", "/v1/models/{name}/versions/{version}/checks"): admin(
            f"{m}/versions/1/checks",
            lambda: {"json": {"checks": [{"name": "smoke", "status": "passed", "detail": "ok"}]}},
        ),
        ("POST", "/v1/models/{name}/versions/{version}/reviews"): team(
            Role.SCIENTIST,
            f"{m}/versions/1/reviews",
            lambda: {"json": {"decision": "comment", "comment": "ok"}},
        ),
        ("POST", "/v1/datasets"): team(
            Role.SCIENTIST, request=lambda: {"json": {"name": f"{TEAM}-d{next(_names)}", "team": TEAM}}
        ),
        ("GET", "/v1/datasets"): listing(),
        ("GET", "/v1/datasets/{name}"): team(Role.VIEWER, d),
        ("POST", "/v1/datasets/{name}/versions"): team(Role.SCIENTIST, f"{d}/versions", _dataset_file),
        ("POST", "/v1/datasets/{name}/versions/from-uri"): team(
            Role.SCIENTIST, f"{d}/versions/from-uri", lambda: {"json": dataset_from_uri}
        ),
        ("GET", "/v1/datasets/{name}/versions"): team(Role.VIEWER, f"{d}/versions"),
        ("GET", "/v1/datasets/{name}/versions/{version}"): team(Role.VIEWER, f"{d}/versions/1"),
        ("GET", "/v1/datasets/{name}/versions/{version}/content"): team(
            Role.VIEWER, f"{d}/versions/1/content"
        ),
        ("POST", "/v1/webhooks"): team(
            Role.DEPLOYER,
            request=lambda: {
                "json": {"team": TEAM, "url": "http://127.0.0.1:9/h", "events": ["model.registered"]}
            },
        ),
        ("GET", "/v1/webhooks"): listing(),
        ("GET", "/v1/webhooks/{webhook_id}"): team(Role.VIEWER, f"/v1/webhooks/{hook_id}"),
        ("POST", "/v1/webhooks/{webhook_id}/test"): team(Role.DEPLOYER, f"/v1/webhooks/{hook_id}/test"),
        ("GET", "/v1/webhooks/{webhook_id}/deliveries"): team(
            Role.VIEWER, f"/v1/webhooks/{hook_id}/deliveries"
        ),
        # Destructive last: the refusals above all ran against the live alias and model.
        ("DELETE", "/v1/webhooks/{webhook_id}"): team(Role.DEPLOYER, f"/v1/webhooks/{hook_id}"),
        ("DELETE", "/v1/models/{name}/aliases/{alias}"): team(Role.SCIENTIST, f"{m}/aliases/staging"),
        ("POST", "/v1/models/{name}/archive"): team(Role.DEPLOYER, f"{m}/archive"),
        ("POST", "/v1/models/{name}/unarchive"): team(Role.DEPLOYER, f"{m}/unarchive"),
        ("DELETE", "/v1/tokens/{token_id}"): admin(f"/v1/tokens/{token_id}"),
    }


async def test_every_registry_route_checks_role_and_team(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        root = registry.auth()
        assert (
            await registry.client.post("/v1/models", json={"name": MODEL, "team": TEAM}, headers=root)
        ).status_code == 201
        v1 = (await registry.client.post(f"/v1/models/{MODEL}/versions", headers=root, **_upload())).json()
        for alias in ("champion", "staging"):
            await registry.client.put(
                f"/v1/models/{MODEL}/aliases/{alias}", json={"version": 1}, headers=root
            )
        await registry.client.post("/v1/datasets", json={"name": DATASET, "team": TEAM}, headers=root)
        d1 = (
            await registry.client.post(f"/v1/datasets/{DATASET}/versions", headers=root, **_dataset_file())
        ).json()
        spare = await registry.client.post(
            "/v1/tokens", json={"subject": "spare", "role": "viewer"}, headers=root
        )
        token_id = spare.json()["token_id"]
        hook = await registry.client.post(
            "/v1/webhooks",
            json={"team": TEAM, "url": f"http://127.0.0.1:9/{MODEL}", "events": ["model.registered"]},
            headers=root,
        )
        hook_id = hook.json()["id"]
        run = MatrixRun(
            registry.client, registry.tokens, table(v1, d1, token_id, hook_id), markers=[MODEL, DATASET]
        )
        await run.run(registry.app)
        assert not run.failures, "\n" + run.report()
