"""The infer routes served beside FastAPI's router (fleet_gateway.fastpath)."""

from __future__ import annotations

from fleet_core.events import RouteArm
from support.gateway import route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


async def test_the_infer_fast_path_answers_like_the_router_did() -> None:
    """The infer routes are served outside FastAPI's router (fastpath.py): same metrics labels,
    request ids, problem bodies; a name the route refuses still gets FastAPI's own 422."""
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes) as gw:
        ok = await gw.client.post(
            "/v2/models/churn/versions/1/infer",
            json={"inputs": ROW},
            headers={**gw.auth(), "X-Request-ID": "fast-1"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-request-id"] == "fast-1"
        missing = await gw.client.post("/v2/models/nope/infer", json={"inputs": ROW}, headers=gw.auth())
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["field"] == "model" and missing.json()["request_id"]
        odd = await gw.client.post("/v2/models/Bad%20Name/infer", json={"inputs": ROW}, headers=gw.auth())
        assert odd.status_code == 422 and odd.json()["field"] == "name", odd.text
        huge = await gw.client.post("/v2/models/churn/versions/99999999999/infer", json={"inputs": ROW})
        assert huge.status_code == 422 and huge.json()["field"] == "version", huge.text
        text = (await gw.client.get("/metrics")).text
        assert 'route="/v2/models/{name}/versions/{version}/infer",service="gateway",status="200"' in text
        assert 'route="/v2/models/{name}/infer",service="gateway",status="404"' in text
