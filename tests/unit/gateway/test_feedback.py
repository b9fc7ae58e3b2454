"""``POST /v1/feedback``: only for requests the model answered, from its team, one label per row;
published with acknowledgement, or 503 so the caller retries."""

from __future__ import annotations

import json
from typing import Any

from fleet_core.auth import Role
from fleet_core.events import OutcomeRecorded, RouteArm
from fleet_gateway.served import FeedbackReceipts, ServedRequests
from support.gateway import AcknowledgedFeedback, GatewayHarness, route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


async def predict(gw: GatewayHarness, model: str, rows: list[dict[str, Any]], request_id: str) -> None:
    r = await gw.client.post(
        f"/v2/models/{model}/infer",
        json={"inputs": rows},
        headers={**gw.auth(Role.VIEWER, ["risk", "payments"]), "X-Request-ID": request_id},
    )
    assert r.status_code == 200, r.text


def routes() -> Any:
    return snapshot(
        route("churn", [RouteArm(version=1, weight=100)], team="risk"),
        route("fraud", [RouteArm(version=4, weight=100)], team="payments"),
    )


async def test_feedback_is_503_when_the_broker_is_away() -> None:
    async with running_gateway(routes(), feedback_timeout_s=1.0) as gw:
        await predict(gw, "churn", [ROW], "rid-1")
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "rid-1", "model": "churn", "labels": [1]},
            headers=gw.auth(),
        )
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"]


async def test_feedback_is_checked_before_publishing() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "churn", [ROW], "r")
        r = await gw.client.post(
            "/v1/feedback", json={"request_id": "r", "model": "churn", "labels": []}, headers=gw.auth()
        )
        assert r.status_code == 422 and r.json()["field"] == "labels"
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "r", "model": "churn", "labels": [1]},
            headers=gw.auth(Role.VIEWER, ["other"]),
        )
        assert r.status_code == 403
        r = await gw.client.post("/v1/feedback", json={"request_id": "r", "model": "churn", "labels": [1]})
        assert r.status_code == 401
    assert publisher.published == []


async def test_feedback_is_published_with_the_served_version_and_the_token_as_source() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "churn", [ROW, ROW], "rid-9")
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "rid-9", "model": "churn", "labels": [0, 1]},
            headers=gw.auth(Role.SCIENTIST, ["risk"], subject="labeller"),
        )
    assert r.status_code == 202 and r.json() == {"event_id": "event-1", "request_id": "rid-9"}
    sent = publisher.published[0]
    assert sent.labels == [0, 1] and sent.version == 1 and sent.source == "labeller"


async def test_the_body_cannot_name_the_labeller() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "churn", [ROW], "rid-2")
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "rid-2", "model": "churn", "labels": [1], "source": "someone-else"},
            headers=gw.auth(subject="me"),
        )
    assert r.status_code == 422 and r.json()["field"] == "source"
    assert publisher.published == []


async def test_feedback_only_labels_requests_the_model_answered() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "fraud", [ROW], "fraud-req")
        for body in (
            {"request_id": "never-served", "model": "churn", "labels": [1]},
            {"request_id": "fraud-req", "model": "churn", "labels": [1]},
        ):
            r = await gw.client.post("/v1/feedback", json=body, headers=gw.auth(Role.ADMIN, ["*"]))
            assert r.status_code == 404, r.text
            assert r.json()["field"] == "request_id"
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "fraud-req", "model": "fraud", "labels": [1], "version": 3},
            headers=gw.auth(Role.VIEWER, ["payments"]),
        )
        assert r.status_code == 422 and r.json()["field"] == "version"
    assert publisher.published == []


async def test_a_viewer_of_another_team_cannot_label_its_traffic() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "fraud", [ROW], "fraud-req")
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "fraud-req", "model": "fraud", "labels": [1]},
            headers=gw.auth(Role.VIEWER, ["risk"]),
        )
        assert r.status_code == 403 and r.json()["field"] == "team"
        # Not even whether the id exists: an unknown id is the same 403.
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "no-such", "model": "fraud", "labels": [1]},
            headers=gw.auth(Role.VIEWER, ["risk"]),
        )
        assert r.status_code == 403
    assert publisher.published == []


async def test_feedback_is_bounded_one_label_per_row() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher, max_body_mb=0.01) as gw:
        await predict(gw, "churn", [ROW, ROW], "two-rows")
        cases: list[tuple[dict[str, Any], int, str | None]] = [
            ({"labels": [1]}, 422, "labels"),
            ({"labels": [1, 2, 3]}, 422, "labels"),
            ({"labels": [1] * 10_000}, 413, None),
            ({"labels": [10**30, 1]}, 422, "labels.0"),
            ({"labels": ["x" * 300, 1]}, 422, "labels.0"),
            ({"labels": [[[1]], 1]}, 422, "labels.0"),
            ({"labels": [1, 0], "version": 10**30}, 422, "version"),
            ({"labels": [1, 0], "model": "\ud800"}, 422, "model"),
        ]
        for extra, status, field in cases:
            # json.dumps escapes the unpaired surrogate as a client in another language would send it.
            body = json.dumps({"request_id": "two-rows", "model": "churn", **extra})
            headers = {**gw.auth(), "Content-Type": "application/json"}
            r = await gw.client.post("/v1/feedback", content=body, headers=headers)
            assert r.status_code == status, (extra.keys(), r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")
            if field is not None:
                assert r.json()["field"].startswith(field), r.json()
    assert publisher.published == []


def test_the_served_request_memory_is_bounded_per_model_and_in_time() -> None:
    now = [0.0]
    memory = ServedRequests(per_model=2, window_s=60, clock=lambda: now[0])
    memory.remember("churn", "a", version=1, rows=1)
    memory.remember("churn", "b", version=1, rows=1)
    memory.remember("fraud", "x", version=4, rows=3)
    memory.remember("churn", "c", version=2, rows=5)
    assert memory.get("churn", "a") is None  # pushed out by churn's own traffic
    assert memory.get("fraud", "x") is not None  # not by another model's
    assert memory.get("churn", "c") is not None and memory.get("churn", "c").rows == 5  # type: ignore[union-attr]
    assert memory.get("fraud", "c") is None
    now[0] = 61.0
    assert memory.get("churn", "c") is None and memory.get("fraud", "x") is None
    assert len(memory) == 0


async def test_a_receipt_lets_any_gateway_instance_accept_the_feedback() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), pii_salt="shared-salt-of-the-fleet") as first:
        r = await first.client.post(
            "/v2/models/churn/infer",
            json={"inputs": [ROW, ROW]},
            headers={**first.auth(), "X-Request-ID": "rid-r"},
        )
        receipt = r.headers["x-fleet-feedback-receipt"]
    # Another instance (or this one after a restart) never saw the request.
    async with running_gateway(routes(), feedback=publisher, pii_salt="shared-salt-of-the-fleet") as other:
        body = {"request_id": "rid-r", "model": "churn", "labels": [1, 0]}
        r = await other.client.post("/v1/feedback", json=body, headers=other.auth())
        assert r.status_code == 404 and r.json()["field"] == "request_id"
        r = await other.client.post("/v1/feedback", json={**body, "receipt": receipt}, headers=other.auth())
        assert r.status_code == 202, r.text
        assert publisher.published[-1].version == 1
        forged = [
            {**body, "receipt": receipt[:-2] + ("AA" if not receipt.endswith("AA") else "BB")},
            {**body, "request_id": "rid-other", "receipt": receipt},
            {**body, "receipt": receipt.replace(".2.", ".1.", 1), "labels": [1]},
            {**body, "receipt": "r1.1.2.0." + "9" * 150},
        ]
        for attempt in forged:
            r = await other.client.post("/v1/feedback", json=attempt, headers=other.auth())
            assert r.status_code == 422 and r.json()["field"] == "receipt", r.text
        r = await other.client.post(
            "/v1/feedback", json={**body, "receipt": receipt}, headers=other.auth(Role.VIEWER, ["payments"])
        )
        assert r.status_code == 403
    async with running_gateway(routes(), feedback=publisher, pii_salt="another-fleets-salt") as stranger:
        r = await stranger.client.post(
            "/v1/feedback", json={**body, "receipt": receipt}, headers=stranger.auth()
        )
        assert r.status_code == 422 and r.json()["field"] == "receipt"
    assert len(publisher.published) == 1


def test_a_receipt_expires() -> None:
    now = [1_000_000.0]
    receipts = FeedbackReceipts("salt", ttl_s=60, clock=lambda: now[0])
    receipt = receipts.issue("churn", "rid", version=3, rows=2)
    served = receipts.verify(receipt, "churn", "rid")
    assert served is not None and (served.version, served.rows) == (3, 2)
    assert receipts.verify(receipt, "fraud", "rid") is None
    now[0] += 61
    assert receipts.verify(receipt, "churn", "rid") is None


# ---------------------------------------------------------------- outcomes


async def test_an_outcome_names_a_served_request_or_a_routing_key_and_is_published_with_its_version() -> None:
    publisher = AcknowledgedFeedback()
    async with running_gateway(routes(), feedback=publisher) as gw:
        await predict(gw, "churn", [ROW, ROW], "rid-7")
        team = gw.auth(Role.VIEWER, ["risk"], subject="shop")
        r = await gw.client.post(
            "/v1/outcomes",
            json={"model": "churn", "kpi": "conversion", "value": 1, "request_id": "rid-7"},
            headers=team,
        )
        assert r.status_code == 202 and r.json() == {"event_id": "event-1"}
        r = await gw.client.post(
            "/v1/outcomes",
            json={"model": "churn", "kpi": "revenue", "value": 42.5, "routing_key": "user-9"},
            headers=team,
        )
        assert r.status_code == 202
        for body, status, field in (
            ({"model": "churn", "kpi": "conversion", "value": 1}, 422, "request_id"),
            (
                {
                    "model": "churn",
                    "kpi": "conversion",
                    "value": 1,
                    "request_id": "rid-7",
                    "routing_key": "u",
                },
                422,
                "request_id",
            ),
            ({"model": "churn", "kpi": "Conversion!", "value": 1, "routing_key": "u"}, 422, "kpi"),
            ({"model": "churn", "kpi": "conversion", "value": "lots", "routing_key": "u"}, 422, "value"),
            (
                {"model": "churn", "kpi": "conversion", "value": 1, "request_id": "never-served"},
                404,
                "request_id",
            ),
        ):
            r = await gw.client.post("/v1/outcomes", json=body, headers=team)
            assert r.status_code == status, (body, r.text)
            assert r.json()["field"] == field, r.text
        r = await gw.client.post(
            "/v1/outcomes",
            json={"model": "churn", "kpi": "conversion", "value": 1, "routing_key": "u"},
            headers=gw.auth(Role.DEPLOYER, ["payments"]),
        )
        assert r.status_code == 403
    first, second = publisher.published
    assert isinstance(first, OutcomeRecorded) and isinstance(second, OutcomeRecorded)
    assert (first.kpi, first.value, first.request_id, first.version, first.source) == (
        "conversion",
        1.0,
        "rid-7",
        1,
        "shop",
    )
    # The key is hashed as the inference log hashes it, so the two join and neither shows the user.
    assert second.routing_key is not None and second.routing_key.startswith("sha256:")
    assert (second.version, second.request_id) == (None, None)
