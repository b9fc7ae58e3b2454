"""What the registry offers as a service: an OpenAPI document of its /v1 API, Prometheus metrics,
health and readiness, and a request id on every response."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fleet_core.auth import Role
from support.registry import RegistryHarness, upload_version

V1_PATHS = {
    "/v1/models": {"get", "post"},
    "/v1/models/{name}": {"get", "patch"},
    "/v1/models/{name}/archive": {"post"},
    "/v1/models/{name}/unarchive": {"post"},
    "/v1/models/{name}/aliases/{alias}": {"get", "put", "delete"},
    "/v1/models/{name}/versions": {"get", "post"},
    "/v1/models/{name}/versions/from-uri": {"post"},
    "/v1/models/{name}/versions/{version}": {"get", "patch"},
    "/v1/models/{name}/versions/{version}/lineage": {"get"},
    "/v1/models/{name}/versions/{version}/checks": {"get", "put"},
    "/v1/models/{name}/versions/{version}/reviews": {"post"},
    "/v1/models/{name}/gate": {"get", "put"},
    "/v1/models/{name}/compare": {"get"},
    "/v1/models/{name}/versions/{version}/artifact": {"get"},
    "/v1/datasets": {"get", "post"},
    "/v1/datasets/{name}": {"get"},
    "/v1/datasets/{name}/versions": {"get", "post"},
    "/v1/datasets/{name}/versions/from-uri": {"post"},
    "/v1/datasets/{name}/versions/{version}": {"get"},
    "/v1/datasets/{name}/versions/{version}/content": {"get"},
    "/v1/audit": {"get"},
    "/v1/tokens": {"get", "post"},
    "/v1/tokens/revoked": {"get"},
    "/v1/tokens/{token_id}": {"delete"},
    "/v1/webhooks": {"get", "post"},
    "/v1/webhooks/{webhook_id}": {"get", "delete"},
    "/v1/webhooks/{webhook_id}/test": {"post"},
    "/v1/webhooks/{webhook_id}/deliveries": {"get"},
}


async def test_the_openapi_document_lists_the_v1_api(registry: RegistryHarness) -> None:
    r = await registry.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["info"]["title"] == "ModelFleet registry"
    v1 = {path: set(ops) for path, ops in doc["paths"].items() if path.startswith("/v1/")}
    assert v1 == V1_PATHS
    assert "bearer" in str(doc["components"]["securitySchemes"]).lower()
    # Request bodies are documented with the schemas that validate them.
    schemas = doc["components"]["schemas"]
    assert {"ModelCreate", "VersionFromUri", "VersionUpdate", "TokenRequest"} <= set(schemas)
    assert "/metrics" not in doc["paths"]


async def test_metrics_are_served_as_prometheus_text(registry: RegistryHarness) -> None:
    admin = registry.auth()
    await registry.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
    await registry.client.get("/v1/models/churn", headers=admin)
    await registry.client.get("/v1/models/nope", headers=admin)
    await upload_version(registry, "churn", admin)

    r = await registry.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }

    def requests(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("service", "registry"), ("status", status))
        return samples.get(("fleet_http_requests_total", labels), 0.0)

    # Labelled by route template, so one series per endpoint however many models there are.
    assert requests("GET", "/v1/models/{name}", "200") == 1
    assert requests("GET", "/v1/models/{name}", "404") == 1
    assert requests("POST", "/v1/models/{name}/versions", "201") == 1
    assert samples[("fleet_outbox_pending", ())] >= 0
    assert any(name == "fleet_http_request_duration_seconds_count" for name, _ in samples)


async def test_health_and_readiness_report_the_database_and_the_outbox(registry: RegistryHarness) -> None:
    assert (await registry.client.get("/healthz")).json() == {"status": "ok", "service": "registry"}
    admin = registry.auth()
    await registry.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
    await upload_version(registry, "churn", admin)
    ready = await registry.client.get("/readyz")
    # No broker in unit tests: the registry stays ready and keeps the event for later.
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"] == {"ok": True, "detail": "sqlite"}
    assert checks["outbox"]["ok"] is True
    assert checks["outbox"]["detail"] == "broker unreachable, 1 event(s) pending"


async def test_every_response_carries_a_request_id(registry: RegistryHarness) -> None:
    admin = registry.auth()
    client = registry.client
    responses = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/metrics"),
        await client.get("/openapi.json"),
        await client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin),
        await client.get("/v1/models", headers=admin),
        await client.get("/v1/models"),  # 401
        await client.get("/v1/models/nope", headers=admin),  # 404
        await client.post("/v1/models", json={"name": 1}, headers=admin),  # 422
        await client.get("/v1/audit", headers=registry.auth(Role.VIEWER)),  # 403
        await client.get("/no/such/route"),  # 404 from the router
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), [(r.request.url.path, r.status_code) for r in responses]
    assert len(set(ids)) == len(ids), "each request gets its own id"


async def test_a_given_request_id_is_echoed_and_a_problem_carries_it(registry: RegistryHarness) -> None:
    headers = {**registry.auth(), "X-Request-ID": "trace-abc-123"}
    ok = await registry.client.get("/v1/models", headers=headers)
    assert ok.headers["x-request-id"] == "trace-abc-123"
    problem = await registry.client.get("/v1/models/nope", headers=headers)
    assert problem.headers["x-request-id"] == "trace-abc-123"
    assert problem.json()["request_id"] == "trace-abc-123"
    generated = await registry.client.get("/v1/models/nope", headers=registry.auth())
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
