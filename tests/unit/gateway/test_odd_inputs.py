"""Odd inputs are a 4xx problem+json on every gateway route, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleet_core.events import RouteArm
from support.gateway import GatewayHarness, route, running_gateway, snapshot

HUGE = 10**30
SURROGATE = "\ud800"

# (method, path, body as JSON text or None, extra headers)
ODD: dict[str, tuple[str, str, str | None, dict[str, str | bytes]]] = {
    "surrogate model name": ("POST", "/v2/models/%ED%A0%80/infer", '{"inputs": {"age": 1}}', {}),
    "huge version": ("POST", f"/v2/models/churn/versions/{HUGE}/infer", '{"inputs": {"age": 1}}', {}),
    "negative version": ("GET", "/v2/models/churn/versions/-137161971302120718336", None, {}),
    "huge version metadata": ("GET", f"/v2/models/churn/versions/{HUGE}/ready", None, {}),
    "uppercase name": ("GET", "/v2/models/CHURN", None, {}),
    "surrogate in a feature name": (
        "POST",
        "/v2/models/churn/infer",
        json.dumps({"inputs": {SURROGATE: 1}}),
        {},
    ),
    "surrogate in a value": (
        "POST",
        "/v2/models/churn/infer",
        json.dumps({"inputs": {"age": 1, "income": 1.0, "email": SURROGATE}}),
        {},
    ),
    "matrix rows of the wrong width": (
        "POST",
        "/v2/models/churn/infer",
        json.dumps(
            {"inputs": [{"name": "m", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]}
        ),
        {},
    ),
    "negative dimension": (
        "POST",
        "/v2/models/churn/infer",
        json.dumps({"inputs": [{"name": "age", "shape": [-1], "datatype": "INT64", "data": [1]}]}),
        {},
    ),
    "huge dimension": (
        "POST",
        "/v2/models/churn/infer",
        '{"inputs": [{"name": "age", "shape": [1' + "0" * 30 + '], "datatype": "INT64", "data": [1]}]}',
        {},
    ),
    "unknown datatype": (
        "POST",
        "/v2/models/churn/infer",
        json.dumps({"inputs": [{"name": "age", "shape": [1], "datatype": "INT128", "data": [1]}]}),
        {},
    ),
    "non-string id": ("POST", "/v2/models/churn/infer", '{"id": 5, "inputs": {"age": 1}}', {}),
    "inputs is a number": ("POST", "/v2/models/churn/infer", '{"inputs": 5}', {}),
    "body is a list": ("POST", "/v2/models/churn/infer", "[1, 2]", {}),
    "non-ascii request id": (
        "POST",
        "/v2/models/churn/infer",
        '{"inputs": {"age": 1}}',
        {"X-Request-ID": "é".encode() * 300},
    ),
    "long routing key": (
        "POST",
        "/v2/models/churn/infer",
        '{"inputs": {"age": 1}}',
        {"X-Fleet-Routing-Key": "k" * 300},
    ),
    "feedback with a huge version": (
        "POST",
        "/v1/feedback",
        json.dumps({"request_id": "r", "model": "churn", "labels": [1], "version": HUGE}),
        {},
    ),
    "feedback with a surrogate model": (
        "POST",
        "/v1/feedback",
        json.dumps({"request_id": "r", "model": SURROGATE, "labels": [1]}),
        {},
    ),
    "feedback with a surrogate request id": (
        "POST",
        "/v1/feedback",
        json.dumps({"request_id": SURROGATE, "model": "churn", "labels": [1]}),
        {},
    ),
    "feedback with a huge label": (
        "POST",
        "/v1/feedback",
        json.dumps({"request_id": "r", "model": "churn", "labels": [HUGE]}),
        {},
    ),
    "feedback with deep labels": (
        "POST",
        "/v1/feedback",
        '{"request_id": "r", "model": "churn", "labels": ' + "[" * 900 + "]" * 900 + "}",
        {},
    ),
}


@pytest.fixture
async def gw() -> AsyncIterator[GatewayHarness]:
    async with running_gateway(snapshot(route("churn", [RouteArm(version=1, weight=100)]))) as h:
        yield h


@pytest.mark.parametrize("case", list(ODD))
async def test_odd_inputs_are_a_4xx_problem(gw: GatewayHarness, case: str) -> None:
    method, path, body, headers = ODD[case]
    extra: dict[str, Any] = {"content": body.encode()} if body is not None else {}
    r = await gw.client.request(
        method, path, headers={**gw.auth(), "Content-Type": "application/json", **headers}, **extra
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
