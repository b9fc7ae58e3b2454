"""``POST /v1/feedback``: published with acknowledgement, or 503 so the caller retries."""

from __future__ import annotations

from fleet_core.auth import Role
from fleet_core.events import InferenceFeedback, RouteArm
from support.gateway import route, running_gateway, snapshot


async def test_feedback_is_503_when_the_broker_is_away() -> None:
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, feedback_timeout_s=1.0) as gw:
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "rid-1", "model": "churn", "labels": [1]},
            headers=gw.auth(),
        )
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"]


async def test_feedback_is_checked_before_publishing() -> None:
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], team="risk"))
    async with running_gateway(routes) as gw:
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


async def test_feedback_is_published_when_acknowledged() -> None:
    published: list[InferenceFeedback] = []

    class Publisher:
        async def publish(self, feedback: InferenceFeedback) -> str:
            published.append(feedback)
            return "event-1"

        async def close(self) -> None:
            """Nothing to release."""

    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], team="risk"))
    async with running_gateway(routes, feedback=Publisher()) as gw:
        r = await gw.client.post(
            "/v1/feedback",
            json={"request_id": "rid-9", "model": "churn", "labels": [0, 1], "version": 1},
            headers=gw.auth(Role.SCIENTIST, ["risk"], subject="labeller"),
        )
    assert r.status_code == 202 and r.json() == {"event_id": "event-1", "request_id": "rid-9"}
    assert published[0].labels == [0, 1] and published[0].version == 1 and published[0].source == "labeller"
