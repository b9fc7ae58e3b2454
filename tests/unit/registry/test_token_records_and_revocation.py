"""Every token is on record, including those minted on the command line, and a revoked token is
refused by the registry at once and by every other service within the refresh delay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from fleet_core.auth import Role
from support.deployer import FakeServingControl, running_deployer
from support.http import serving
from support.registry import SECRET, RegistryHarness, running_registry


async def test_a_revoked_token_is_refused_by_the_registry_at_once(registry: RegistryHarness) -> None:
    root = registry.auth()
    issued = (
        await registry.client.post(
            "/v1/tokens", json={"subject": "ci-bot", "role": "viewer", "teams": ["growth"]}, headers=root
        )
    ).json()
    bot = {"Authorization": f"Bearer {issued['token']}"}
    assert (await registry.client.get("/v1/models", headers=bot)).status_code == 200

    r = await registry.client.delete(f"/v1/tokens/{issued['token_id']}", headers=root)
    assert r.status_code == 200, r.text
    assert r.json()["revoked_by"] == "admin-user" and r.json()["revoked_at"]
    refused = await registry.client.get("/v1/models", headers=bot)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # Revoking again is harmless; the audit log has one revocation.
    assert (await registry.client.delete(f"/v1/tokens/{issued['token_id']}", headers=root)).status_code == 200
    audit = (await registry.client.get("/v1/audit?action=token", headers=root)).json()["items"]
    assert [e["action"] for e in audit] == ["token.revoke", "token.issue"]
    listed = (await registry.client.get("/v1/tokens", headers=root)).json()["items"]
    assert listed[0]["token_id"] == issued["token_id"] and listed[0]["revoked_at"]
    # Only admins revoke, and only recorded tokens.
    viewer = registry.auth(Role.DEPLOYER, ["*"])
    assert (
        await registry.client.delete(f"/v1/tokens/{issued['token_id']}", headers=viewer)
    ).status_code == 403
    missing = await registry.client.delete("/v1/tokens/abc123", headers=root)
    assert (missing.status_code, missing.json()["field"]) == (404, "token_id")


async def test_another_service_refuses_a_revoked_token_within_the_refresh_delay(tmp_path: Path) -> None:
    for room in ("registry", "deployer"):
        (tmp_path / room).mkdir()
    async with (
        running_registry(tmp_path / "registry") as registry,
        serving(registry.app, lifespan="off") as url,
    ):
        root = registry.auth()
        issued = (
            await registry.client.post("/v1/tokens", json={"subject": "ops", "role": "admin"}, headers=root)
        ).json()
        ops = {"Authorization": f"Bearer {issued['token']}"}
        async with running_deployer(
            tmp_path / "deployer", serving=FakeServingControl(), registry_url=url, revocation_refresh_s=0.2
        ) as deployer:
            assert (await deployer.client.get("/v1/deployments", headers=ops)).status_code == 200
            await registry.client.delete(f"/v1/tokens/{issued['token_id']}", headers=root)
            loop = asyncio.get_running_loop()
            revoked_at, status = loop.time(), 200
            while status == 200 and loop.time() - revoked_at < 10:
                await asyncio.sleep(0.05)
                status = (await deployer.client.get("/v1/deployments", headers=ops)).status_code
            assert status == 401, "the deployer still accepts a revoked token after 10 s"
            assert loop.time() - revoked_at < 2.0  # two refresh intervals and change
            # Other tokens still work.
            assert (await deployer.client.get("/v1/deployments", headers=deployer.auth())).status_code == 200


async def test_a_service_keeps_its_revocation_list_when_the_registry_goes_away(tmp_path: Path) -> None:
    for room in ("registry", "deployer"):
        (tmp_path / room).mkdir()
    async with running_registry(tmp_path / "registry") as registry:
        root = registry.auth()
        issued = (
            await registry.client.post("/v1/tokens", json={"subject": "ops", "role": "admin"}, headers=root)
        ).json()
        await registry.client.delete(f"/v1/tokens/{issued['token_id']}", headers=root)
        ops = {"Authorization": f"Bearer {issued['token']}"}
        async with serving(registry.app, lifespan="off") as url:
            deployer_ctx = running_deployer(
                tmp_path / "deployer",
                serving=FakeServingControl(),
                registry_url=url,
                revocation_refresh_s=0.2,
            )
            deployer = await deployer_ctx.__aenter__()
            follower = deployer.app.state.revocations
            for _ in range(100):
                if deployer.tokens.is_revoked(issued["token_id"]):
                    break
                await asyncio.sleep(0.05)
        try:
            # The registry is gone: refreshes fail, the list stays, the token stays refused.
            assert not await follower.refresh()
            assert (await deployer.client.get("/v1/deployments", headers=ops)).status_code == 401
        finally:
            await deployer_ctx.__aexit__(None, None, None)


def test_issue_token_on_the_command_line_is_recorded_and_audited(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        "FLEET_HOME": str(tmp_path),
        "FLEET_JWT_SECRET": SECRET,
        "FLEET_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/registry.db",
    }
    run = [sys.executable, "-m", "fleet_registry"]
    unmigrated = subprocess.run([*run, "issue-token"], env=env, capture_output=True, text=True, timeout=60)
    assert unmigrated.returncode == 1 and "migrate" in unmigrated.stderr and not unmigrated.stdout
    subprocess.run([*run, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    issued = subprocess.run(
        [*run, "issue-token", "--subject", "ops", "--role", "deployer", "--team", "growth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = issued.stdout.strip()

    async def check() -> None:
        async with running_registry(tmp_path, database_url=env["FLEET_DATABASE_URL"]) as registry:
            root = registry.auth()
            records = (await registry.client.get("/v1/tokens", headers=root)).json()["items"]
            principal = registry.tokens.verify(token)
            assert [
                (t["token_id"], t["subject"], t["role"], t["teams"], t["issued_by"]) for t in records
            ] == [(principal.token_id, "ops", "deployer", ["growth"], "bootstrap:issue-token")]
            audit = (await registry.client.get("/v1/audit?action=token.issue", headers=root)).json()["items"]
            assert audit[0]["actor"] == "bootstrap:issue-token"
            await registry.client.delete(f"/v1/tokens/{principal.token_id}", headers=root)
            r = await registry.client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401

    asyncio.run(check())


async def test_the_revocation_list_needs_a_token_and_holds_only_ids(registry: RegistryHarness) -> None:
    assert (await registry.client.get("/v1/tokens/revoked")).status_code == 401
    r = await registry.client.get("/v1/tokens/revoked", headers=registry.auth(Role.VIEWER, ["growth"]))
    assert r.status_code == 200 and r.json() == {"items": []}
