"""The inference API with routes injected and an in-memory backend: forms, headers, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleet_core.errors import InvalidInput
from fleet_core.events import RouteArm
from fleet_gateway.backend import ModelFailed, ModelUnavailable
from support.gateway import FakeBackend, GatewayHarness, route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


@pytest.fixture
async def gw() -> AsyncIterator[GatewayHarness]:
    routes = snapshot(
        route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)]),
        route("fraud", [RouteArm(version=4, weight=100)], team="payments"),
    )
    async with running_gateway(routes, max_body_mb=0.01) as h:
        yield h


async def test_plain_single_row_is_answered_in_plain_form_with_headers(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers={**gw.auth(), "X-Request-ID": "req-1"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-fleet-model-version"] == "1"
    assert r.headers["x-request-id"] == "req-1"
    assert r.json() == {"model": "churn", "version": 1, "predictions": [10.0], "request_id": "req-1"}


async def test_plain_rows_get_one_prediction_each(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": [ROW, ROW, ROW]}, headers=gw.auth())
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [10.0, 11.0, 12.0]
    assert r.headers["x-request-id"]


async def test_oip_column_tensors_get_an_oip_response(gw: GatewayHarness) -> None:
    body = {
        "id": "client-7",
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 40]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
            {"name": "email", "shape": [2], "datatype": "BYTES", "data": ["a@x.io", "b@x.io"]},
        ],
    }
    r = await gw.client.post("/v2/models/churn/infer", json=body, headers=gw.auth())
    assert r.status_code == 200, r.text
    assert r.headers["x-fleet-model-version"] == "1"
    assert r.json() == {
        "model_name": "churn",
        "model_version": "1",
        "id": "client-7",
        "outputs": [{"name": "score", "shape": [2], "datatype": "FP64", "data": [10.0, 11.0]}],
    }
    assert gw.backend.calls[-1] == (
        "churn:1",
        [
            {"age": 30, "income": 1.5, "email": "a@x.io"},
            {"age": 40, "income": 2.5, "email": "b@x.io"},
        ],
    )


async def test_oip_single_matrix_tensor_follows_signature_order(gw: GatewayHarness) -> None:
    # A matrix of mixed types travels as BYTES in strict OIP; the gateway takes JSON values as they are.
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "BYTES", "data": [33, 9.5, "c@x.io"]}]
    }
    r = await gw.client.post("/v2/models/churn/versions/2/infer", json=body, headers=gw.auth())
    assert r.status_code == 200, r.text
    assert r.headers["x-fleet-model-version"] == "2"
    assert r.json()["model_version"] == "2"
    assert gw.backend.calls[-1] == ("churn:2", [{"age": 33, "income": 9.5, "email": "c@x.io"}])


async def test_explicit_version_bypasses_the_split(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v2/models/churn/versions/2/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 200
    assert r.json()["version"] == 2 and r.json()["predictions"] == [20.0]


async def test_oip_requested_outputs_are_checked_before_the_model_and_answered(gw: GatewayHarness) -> None:
    body = {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [30]}]}
    body["inputs"] += [
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.5]},
        {"name": "email", "shape": [1], "datatype": "BYTES", "data": ["a@x.io"]},
    ]
    r = await gw.client.post(
        "/v2/models/churn/infer", json={**body, "outputs": [{"name": "score"}]}, headers=gw.auth()
    )
    assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == ["score"]
    calls = len(gw.backend.calls)
    for outputs, why in (([{"name": "proba"}], "is not an output"), ([{"name": "score"}] * 2, "twice")):
        r = await gw.client.post(
            "/v2/models/churn/infer", json={**body, "outputs": outputs}, headers=gw.auth()
        )
        assert r.status_code == 422, r.text
        assert r.json()["field"] == f"outputs[{len(outputs) - 1}].name" and why in r.json()["detail"]
        assert "score" in r.json()["detail"] and r.json()["error"] == r.json()["detail"]
    assert len(gw.backend.calls) == calls


def test_a_request_naming_outputs_gets_only_those_in_its_order() -> None:
    from fleet_core.schemas import FieldSpec, Signature
    from fleet_gateway.protocol import output_tensors

    x = [FieldSpec(name="x", type="float")]
    predictions = [{"label": "a", "proba": 0.9}, {"label": "b", "proba": 0.2}]
    two = Signature(
        inputs=x, outputs=[FieldSpec(name="label", type="string"), FieldSpec(name="proba", type="float")]
    )
    assert [t["name"] for t in output_tensors(predictions, two)] == ["label", "proba"]
    [proba] = output_tensors(predictions, two, ["proba"])
    assert (proba["name"], proba["data"]) == ("proba", [0.9, 0.2])
    assert [t["name"] for t in output_tensors(predictions, two, ["proba", "label"])] == ["proba", "label"]
    # No declared outputs: checked against what the model answered.
    undeclared = Signature(inputs=x, outputs=[])
    assert [t["name"] for t in output_tensors([1, 0], undeclared, ["predictions"])] == ["predictions"]
    with pytest.raises(InvalidInput, match="not an output of this model"):
        output_tensors([1, 0], undeclared, ["label"])


async def test_invalid_input_is_422_naming_the_field_and_never_reaches_the_model(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": {**ROW, "age": 200}}, headers=gw.auth()
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["field"] == "inputs.age"
    assert "maximum" in problem["detail"]
    assert r.headers["x-fleet-model-version"] == "1"
    assert gw.backend.calls == []


async def test_oip_tensor_with_wrong_length_names_the_tensor(gw: GatewayHarness) -> None:
    body = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
            {"name": "email", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
    }
    r = await gw.client.post("/v2/models/churn/infer", json=body, headers=gw.auth())
    assert r.status_code == 422
    assert r.json()["field"] == "inputs.age"


async def test_unknown_feature_and_missing_feature_are_named(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer",
        json={"inputs": [{"age": 1, "income": 2.0, "colour": "red"}]},
        headers=gw.auth(),
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"inputs.email", "inputs.colour"}


async def test_malformed_json_is_400(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer",
        content=b'{"inputs": {',
        headers={**gw.auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["type"].endswith("/malformed-json")


async def test_body_without_inputs_is_422(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v2/models/churn/infer", json={"rows": [ROW]}, headers=gw.auth())
    assert r.status_code == 422 and r.json()["field"] == "inputs"


async def test_unknown_model_and_unserved_version_are_404(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v2/models/nope/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")
    r = await gw.client.post("/v2/models/churn/versions/9/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 404 and r.json()["field"] == "version"


async def test_body_over_the_limit_is_413(gw: GatewayHarness) -> None:
    rows = [ROW] * 200  # > 10 KiB
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": rows}, headers=gw.auth())
    assert r.status_code == 413
    assert r.json()["type"].endswith("/payload-too-large")
    assert r.headers["x-request-id"]


async def test_model_failure_is_502_and_unavailability_503(gw: GatewayHarness) -> None:
    backend: FakeBackend = gw.backend
    backend.fail["churn:1"] = ModelFailed("churn:1 failed: ValueError: boom")
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 502 and "boom" in r.json()["detail"]
    assert r.headers["x-fleet-model-version"] == "1"
    backend.fail["churn:1"] = ModelUnavailable("no replica")
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 503 and r.headers["retry-after"]
    backend.fail["churn:1"] = RuntimeError("unexpected")
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
    assert r.status_code == 502 and "RuntimeError" in r.json()["detail"]


async def test_metadata_describes_the_signature_and_served_versions(gw: GatewayHarness) -> None:
    r = await gw.client.get("/v2/models/churn", headers=gw.auth())
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["name"] == "churn" and meta["versions"] == ["1", "2"]
    assert meta["platform"] == "fleet-sklearn"
    assert meta["inputs"] == [
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "email", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [-1]}]
    assert (await gw.client.get("/v2/models/churn/versions/2", headers=gw.auth())).json()["parameters"][
        "version"
    ] == 2


async def test_health_and_model_readiness(gw: GatewayHarness) -> None:
    assert (await gw.client.get("/v2/health/live")).json() == {"live": True}
    r = await gw.client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    r = await gw.client.get("/v2/models/churn/ready", headers=gw.auth())
    assert r.status_code == 200 and r.json() == {"name": "churn", "ready": True}
    gw.backend.is_ready = False
    assert (await gw.client.get("/v2/models/churn/ready", headers=gw.auth())).status_code == 503
    assert (await gw.client.get("/v2/health/ready")).status_code == 503


async def test_gateway_without_routes_starts_but_is_not_ready() -> None:
    # The deployer (port 1) is down: the gateway starts anyway and says it is not ready.
    async with running_gateway(None) as h:
        r = await h.client.get("/v2/health/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["routes"]["ok"] is False
        assert (await h.client.get("/v2/health/live")).status_code == 200
