"""The delivery gate in the registry: a model's gate, a version's checks (only from a token with
the checks scope), reviews by someone other than the registrant, the state they add up to, and
``version.checked`` staged whenever a gated version's state changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from fleet_core.auth import Role
from fleet_core.events import Topic, parse_event
from fleet_registry.models import MESSAGING, AuditRow
from support.registry import RegistryHarness, running_registry, upload_version

PASSED = [
    {"name": "signature", "status": "passed", "detail": "same inputs as v1"},
    {"name": "smoke", "status": "passed", "detail": "predicted its 3 example rows"},
    {
        "name": "evaluation",
        "status": "passed",
        "detail": "better: accuracy 0.93 against 0.88",
        "measured": {"accuracy": 0.93},
    },
]


def _checker(registry: RegistryHarness, team: str = "gx") -> dict[str, str]:
    token, _, _ = registry.tokens.issue(
        "service:retrainer", Role.DEPLOYER, [team], scopes=["delivery:checks"]
    )
    return {"Authorization": f"Bearer {token}"}


async def _gated_version(
    registry: RegistryHarness, model: str = "gx-churn", *, approvals: int = 0
) -> dict[str, str]:
    """v1 registered by alice (a deployer of gx) with the gated policy; her headers."""
    alice = registry.auth(Role.DEPLOYER, ["gx"], subject="alice")
    r = await registry.client.post("/v1/models", json={"name": model, "team": "gx"}, headers=alice)
    assert r.status_code == 201, r.text
    if approvals:
        r = await registry.client.put(
            f"/v1/models/{model}/gate", json={"approvals": approvals}, headers=alice
        )
        assert r.status_code == 200, r.text
    r = await upload_version(registry, model, alice, deploy_policy="gated")
    assert r.status_code == 201, r.text
    return alice


async def _announced(registry: RegistryHarness) -> list[Any]:
    t = MESSAGING.outbox
    async with registry.app.state.db.sessions() as s:
        rows = (
            await s.execute(
                select(t.c.payload).where(t.c.topic == Topic.VERSION_CHECKED.value).order_by(t.c.seq)
            )
        ).all()
    return [parse_event(Topic.VERSION_CHECKED, row.payload).data for row in rows]


async def test_a_failed_check_stops_the_version_with_its_reason_and_announces_it(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        alice = await _gated_version(registry)
        r = await registry.client.get("/v1/models/gx-churn/versions/1/checks", headers=alice)
        assert r.status_code == 200 and r.json()["state"] == "checking"
        assert r.json()["gate"]["approvals"] == 0  # the defaults, before anyone set a gate

        worse = [
            *PASSED[:2],
            {
                "name": "evaluation",
                "status": "failed",
                "detail": "worse: accuracy 0.61 against the champion's 0.93",
            },
        ]
        r = await registry.client.put(
            "/v1/models/gx-churn/versions/1/checks", json={"checks": worse}, headers=_checker(registry)
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "failed"
        assert "evaluation" in body["reason"] and "worse: accuracy 0.61" in body["reason"]
        assert [c["status"] for c in body["checks"]] == ["passed", "passed", "failed"]
        assert all(c["by"] == "service:retrainer" for c in body["checks"])

        (event,) = await _announced(registry)
        assert (event.model, event.version, event.team, event.state) == ("gx-churn", 1, "gx", "failed")
        assert "worse" in event.reason


async def test_checks_come_only_from_a_token_with_the_checks_scope(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        alice = await _gated_version(registry)
        for headers in (alice, registry.auth(Role.DEPLOYER, ["gx"], subject="bob"), _checker(registry, "ox")):
            r = await registry.client.put(
                "/v1/models/gx-churn/versions/1/checks", json={"checks": PASSED}, headers=headers
            )
            assert r.status_code == 403, r.text
            assert r.headers["content-type"] == "application/problem+json"
        r = await registry.client.put(
            "/v1/models/gx-churn/versions/1/checks",
            json={"checks": [{"name": "smoke", "status": "maybe", "detail": ""}]},
            headers=_checker(registry),
        )
        assert r.status_code == 422 and "status" in r.text
        r = await registry.client.get("/v1/models/gx-churn/versions/1/checks", headers=alice)
        assert r.json()["state"] == "checking" and r.json()["checks"] == []
        assert await _announced(registry) == []


async def test_a_passed_version_waits_for_an_approval_from_someone_else(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        alice = registry.auth(Role.SCIENTIST, ["gx"], subject="alice")
        bob = registry.auth(Role.DEPLOYER, ["gx"], subject="bob")
        carol = registry.auth(Role.SCIENTIST, ["gx"], subject="carol")
        mallory = registry.auth(Role.DEPLOYER, ["ox"], subject="mallory")
        await registry.client.post("/v1/models", json={"name": "gx-churn", "team": "gx"}, headers=bob)

        # A scientist may ask for the gate only where a person must approve what passes it.
        r = await upload_version(registry, "gx-churn", alice, deploy_policy="gated")
        assert r.status_code == 403 and r.json()["field"] == "deploy_policy"
        r = await registry.client.put("/v1/models/gx-churn/gate", json={"approvals": 1}, headers=carol)
        assert r.status_code == 403  # setting the gate is the deployer's
        r = await registry.client.put(
            "/v1/models/gx-churn/gate", json={"approvals": 1, "min_improvement": 0.01}, headers=bob
        )
        assert r.status_code == 200 and r.json()["approvals"] == 1
        r = await upload_version(registry, "gx-churn", alice, deploy_policy="gated")
        assert r.status_code == 201, r.text
        r = await registry.client.put(
            "/v1/models/gx-churn/versions/1/checks", json={"checks": PASSED}, headers=_checker(registry)
        )
        assert r.json()["state"] == "awaiting_approval", r.text
        assert r.json()["reason"] == "checks passed; 0 of 1 approvals (deployer)"

        # The registrant, a scientist, another team's deployer: none of them approves.
        alice_deployer = registry.auth(Role.DEPLOYER, ["gx"], subject="alice")
        for headers, status in ((alice_deployer, 403), (carol, 403), (mallory, 403)):
            r = await registry.client.post(
                "/v1/models/gx-churn/versions/1/reviews", json={"decision": "approve"}, headers=headers
            )
            assert r.status_code == status, r.text
        r = await registry.client.post(
            "/v1/models/gx-churn/versions/1/reviews",
            json={"decision": "comment", "comment": "the recall on churners is what matters here"},
            headers=carol,
        )
        assert r.status_code == 201 and r.json()["state"] == "awaiting_approval"

        r = await registry.client.post(
            "/v1/models/gx-churn/versions/1/reviews",
            json={"decision": "approve", "comment": "holdout looks right"},
            headers=bob,
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["state"] == "ready" and body["approvals"] == 1
        assert [(v["kind"], v["actor"]) for v in body["reviews"]] == [
            ("comment", "carol"),
            ("approve", "bob"),
        ]

        states = [e.state for e in await _announced(registry)]
        assert states == ["awaiting_approval", "ready"]  # the comment announced nothing
        async with registry.app.state.db.sessions() as s:
            actions = (
                await s.scalars(select(AuditRow.action).where(AuditRow.action.like("version.%")))
            ).all()
            gate = (await s.scalars(select(AuditRow.action).where(AuditRow.action == "model.gate"))).all()
        assert {"version.checks", "version.comment", "version.approve"} <= set(actions) and gate


async def test_a_rejection_stops_a_version_and_a_comment_needs_text(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        alice = await _gated_version(registry)
        bob = registry.auth(Role.DEPLOYER, ["gx"], subject="bob")
        r = await registry.client.post(
            "/v1/models/gx-churn/versions/1/reviews",
            json={"decision": "comment", "comment": " "},
            headers=alice,
        )
        assert r.status_code == 422 and r.json()["field"] == "comment"
        r = await registry.client.post(
            "/v1/models/gx-churn/versions/1/reviews",
            json={"decision": "reject", "comment": "trained on last year's prices"},
            headers=bob,
        )
        assert r.status_code == 201
        await registry.client.put(
            "/v1/models/gx-churn/versions/1/checks", json={"checks": PASSED}, headers=_checker(registry)
        )
        r = await registry.client.get("/v1/models/gx-churn/versions/1/checks", headers=alice)
        assert r.json()["state"] == "rejected"
        assert r.json()["reason"] == "rejected by bob: trained on last year's prices"


async def test_a_version_that_is_not_gated_has_no_state(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry:
        root = registry.auth()
        await registry.client.post("/v1/models", json={"name": "gx-plain", "team": "gx"}, headers=root)
        assert (await upload_version(registry, "gx-plain", root)).status_code == 201
        r = await registry.client.get("/v1/models/gx-plain/versions/1/checks", headers=root)
        assert r.status_code == 200 and r.json()["state"] is None
        assert r.json()["reason"] == "deploy policy 'none': the version is not gated"
        r = await registry.client.get("/v1/models/gx-plain/versions/9/checks", headers=root)
        assert r.status_code == 404 and r.json()["field"] == "version"
