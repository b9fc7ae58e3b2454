"""Webhooks: a team's subscriptions get its events over real HTTP, signed by the Standard Webhooks
scheme, retried until the receiver takes them; other teams' webhooks get nothing; URLs outside the
allow-list are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_core.events import Topic, parse_event
from fleet_registry.events import registry_consumer
from fleet_registry.models import MESSAGING
from fleet_sdk.cli import app as cli
from support.cli_output import printed_json
from support.http import serving
from support.registry import RegistryHarness, running_registry, upload_version


@dataclass
class Receiver:
    """What a receiving system does: verify the signature with the webhook's secret, then keep it."""

    secrets: dict[str, str] = field(default_factory=dict)
    """path -> the secret of the webhook posting there"""
    fail_first: dict[str, int] = field(default_factory=dict)
    """path -> how many valid deliveries to answer 500 before accepting"""
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: int = 0

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.post("/hooks/{name}")
        async def hook(name: str, request: Request) -> Response:
            body = await request.body()
            try:
                event = Verifier(self.secrets[name]).verify(body, dict(request.headers))
            except (KeyError, WebhookVerificationError):
                self.refused += 1
                return Response(status_code=401)
            if self.fail_first.get(name, 0) > 0:
                self.fail_first[name] -= 1
                return Response("busy", status_code=500)
            self.received.setdefault(name, []).append(event)
            return Response(status_code=204)

        return api


@asynccontextmanager
async def registry_and_receiver(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[RegistryHarness, str, Receiver]]:
    receiver = Receiver()
    async with (
        serving(receiver.app()) as url,
        running_registry(tmp_path, webhook_retry_base_s=0.05, **settings) as registry,
    ):
        yield registry, url, receiver


async def _subscribe(registry: RegistryHarness, team: str, url: str, events: list[str]) -> dict[str, Any]:
    r = await registry.client.post(
        "/v1/webhooks",
        json={"team": team, "url": url, "events": events},
        headers=registry.auth(Role.DEPLOYER, [team]),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _registered_event(registry: RegistryHarness, model: str, team: str) -> Any:
    """Register v1 of ``model`` and read back the ``model.registered`` it staged in the outbox."""
    root = registry.auth()
    assert (
        await registry.client.post("/v1/models", json={"name": model, "team": team}, headers=root)
    ).status_code == 201
    r = await upload_version(registry, model, root)
    assert r.status_code == 201, r.text
    t = MESSAGING.outbox
    async with registry.app.state.db.sessions() as s:
        rows = (await s.execute(select(t.c.payload).where(t.c.topic == Topic.MODEL_REGISTERED.value))).all()
    events = [parse_event(Topic.MODEL_REGISTERED, row.payload) for row in rows]
    return next(e for e in events if e.data.model == model)


async def _deliveries(registry: RegistryHarness, hook: dict[str, Any], team: str) -> list[dict[str, Any]]:
    r = await registry.client.get(
        f"/v1/webhooks/{hook['id']}/deliveries", headers=registry.auth(Role.VIEWER, [team])
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


async def _until(check: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_teams_event_reaches_its_webhook_signed_and_retried_and_no_other_teams(
    tmp_path: Path,
) -> None:
    async with registry_and_receiver(tmp_path) as (registry, url, receiver):
        mine = await _subscribe(registry, "gx", f"{url}/hooks/mine", ["model.registered", "rollout.updated"])
        theirs = await _subscribe(registry, "ox", f"{url}/hooks/theirs", ["model.registered"])
        assert mine["secret"].startswith("whsec_")
        receiver.secrets = {"mine": mine["secret"], "theirs": theirs["secret"]}
        receiver.fail_first = {"mine": 1}  # the receiver is briefly down: the delivery is retried

        event = await _registered_event(registry, "gx-churn", "gx")
        consumer = registry_consumer("127.0.0.1:1", registry.app.state.store, registry.app.state.webhooks)
        await consumer.handlers[Topic.MODEL_REGISTERED]([event])
        await consumer.handlers[Topic.MODEL_REGISTERED]([event])  # redelivered by Kafka: queued once

        async def delivered() -> bool:
            return [d["state"] for d in await _deliveries(registry, mine, "gx")] == ["delivered"]

        await _until(delivered)
        (got,) = receiver.received["mine"]
        assert got["id"] == event.id and got["type"] == "io.modelfleet.model.registered.v1"
        assert got["data"]["model"] == "gx-churn" and got["data"]["version"] == 1
        assert "fleetauth" not in got
        (delivery,) = await _deliveries(registry, mine, "gx")
        assert delivery["attempts"] == 2 and delivery["last_status"] in (200, 204)
        assert "theirs" not in receiver.received and await _deliveries(registry, theirs, "ox") == []
        assert receiver.refused == 0

        # A forged delivery (another secret) is refused by the receiver's check.
        forged = Verifier("whsec_" + "A" * 32)
        at, body = datetime.now(UTC), '{"id":"x"}'
        headers = {
            "webhook-id": "x",
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": forged.sign("x", at, body),
        }
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{url}/hooks/mine", content=body, headers=headers)).status_code == 401
        assert receiver.refused == 1

        # The test endpoint queues a signed ping; listing never shows secrets.
        r = await registry.client.post(
            f"/v1/webhooks/{mine['id']}/test", headers=registry.auth(Role.DEPLOYER, ["gx"])
        )
        assert r.status_code == 202, r.text

        async def pinged() -> bool:
            return len(receiver.received["mine"]) == 2

        await _until(pinged)
        assert receiver.received["mine"][1]["type"] == "io.modelfleet.webhook.test.v1"
        listed = (
            await registry.client.get("/v1/webhooks", headers=registry.auth(Role.VIEWER, ["gx"]))
        ).json()
        assert [h["id"] for h in listed] == [mine["id"]] and "secret" not in listed[0]

        audit = (await registry.client.get("/v1/audit", headers=registry.auth())).json()
        assert {"webhook.create"} <= {e["action"] for e in audit["items"]}


async def test_a_receiver_that_never_answers_ok_ends_failed_after_the_last_attempt(tmp_path: Path) -> None:
    async with registry_and_receiver(tmp_path, webhook_max_attempts=3) as (registry, url, receiver):
        hook = await _subscribe(registry, "gx", f"{url}/hooks/down", ["model.registered"])
        receiver.secrets = {"down": hook["secret"]}
        receiver.fail_first = {"down": 100}
        event = await _registered_event(registry, "gx-churn", "gx")
        await registry_consumer(
            "127.0.0.1:1", registry.app.state.store, registry.app.state.webhooks
        ).handlers[Topic.MODEL_REGISTERED]([event])

        async def failed() -> bool:
            return [d["state"] for d in await _deliveries(registry, hook, "gx")] == ["failed"]

        await _until(failed)
        (delivery,) = await _deliveries(registry, hook, "gx")
        assert delivery["attempts"] == 3 and delivery["last_status"] == 500
        assert delivery["last_error"].startswith("HTTP 500") and delivery["next_attempt_at"] is None


async def test_urls_outside_the_allow_list_and_unknown_events_are_refused(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        auth = registry.auth(Role.DEPLOYER, ["gx"])
        cases = [
            (
                {"url": "http://10.0.0.5:8080/hook", "events": ["model.registered"]},
                "url",
                "not in FLEET_WEBHOOK",
            ),
            ({"url": "file:///etc/passwd", "events": ["model.registered"]}, "url", "http:// or https://"),
            ({"url": "http://u:p@127.0.0.1/h", "events": ["model.registered"]}, "url", "credentials"),
            ({"url": "http://127.0.0.1/h", "events": ["inference.logged"]}, "events", "cannot be subscribed"),
        ]
        for body, field_name, says in cases:
            r = await registry.client.post("/v1/webhooks", json={"team": "gx", **body}, headers=auth)
            assert r.status_code == 422, r.text
            problem = r.json()
            assert says in problem["detail"] and field_name in str(problem), problem
        # A scientist of the team may not subscribe an outside system to its events.
        r = await registry.client.post(
            "/v1/webhooks",
            json={"team": "gx", "url": "http://127.0.0.1/h", "events": ["model.registered"]},
            headers=registry.auth(Role.SCIENTIST, ["gx"]),
        )
        assert r.status_code == 403


async def test_fleet_webhooks_add_test_deliveries_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        registry_and_receiver(tmp_path) as (registry, url, receiver),
        serving(registry.app, lifespan="off") as registry_url,
    ):
        monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
        monkeypatch.setenv("FLEET_REGISTRY_URL", registry_url)
        token = registry.auth(Role.DEPLOYER, ["gx"])["Authorization"].removeprefix("Bearer ")
        monkeypatch.setenv("FLEET_TOKEN", token)

        def fleet(*args: str) -> Any:
            return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})

        added = await asyncio.to_thread(
            fleet,
            "webhooks",
            "add",
            f"{url}/hooks/ci",
            "--team",
            "gx",
            "--event",
            "model.registered",
            "--json",
        )
        assert added.exit_code == 0, added.output
        hook = printed_json(added.output)
        receiver.secrets = {"ci": hook["secret"]}

        tested = await asyncio.to_thread(fleet, "webhooks", "test", hook["id"])
        assert tested.exit_code == 0, tested.output
        assert "delivered after 1 attempt(s)" in tested.output
        assert receiver.received["ci"][0]["type"] == "io.modelfleet.webhook.test.v1"

        listed = await asyncio.to_thread(fleet, "webhooks", "list")
        assert listed.exit_code == 0 and hook["id"] in listed.output and hook["secret"] not in listed.output
        log = await asyncio.to_thread(fleet, "webhooks", "deliveries", hook["id"])
        assert log.exit_code == 0 and "webhook.test" in log.output and "delivered" in log.output

        receiver.secrets = {}  # the receiver lost the secret: it refuses, and the test says so
        failing = await asyncio.to_thread(fleet, "webhooks", "test", hook["id"], "--wait", "3")
        assert failing.exit_code == 1 and "pending" in failing.output and "HTTP 401" in failing.output

        removed = await asyncio.to_thread(fleet, "webhooks", "remove", hook["id"])
        assert removed.exit_code == 0, removed.output
        after = await asyncio.to_thread(fleet, "webhooks", "list")
        assert after.exit_code == 0 and hook["id"] not in after.output
