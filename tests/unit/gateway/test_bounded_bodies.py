"""Tiny hostile bodies are refused before the gateway allocates anything their claims call for.

A tensor's ``shape`` is a claim: ``[10**12, 0]`` in 80 bytes used to make the gateway build 10**12
empty rows, and thousands of dimensions overflowed the stack (a 500). Every such body is now a
422 naming the field, answered at once, with memory flat.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fleet_core.events import RouteArm
from fleet_core.schemas import FieldSpec, Signature
from support.gateway import GatewayHarness, route, running_gateway, snapshot

SIGNATURE = Signature(
    inputs=[
        FieldSpec(name="age", type="int"),
        FieldSpec(name="plan", type="category", categories=["basic", "pro"]),
        FieldSpec(name="history", type="float", shape=[-1]),
    ],
    outputs=[FieldSpec(name="score", type="float")],
)
# Generous next to the milliseconds these take, far below what the unbounded versions took.
PROMPTLY_S = 2.0
MAX_PEAK_BYTES = 16 * 1024 * 1024

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def gw() -> AsyncIterator[GatewayHarness]:
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], signature=SIGNATURE))
    async with running_gateway(routes, max_rows=100) as h:
        yield h


def tensor(name: str, shape: list[int], data: list[Any], datatype: str = "INT64") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


class Nested:
    """A value nested ``depth`` lists deep, deeper than any JSON encoder here will write."""

    def __init__(self, depth: int, leaf: Any = 1) -> None:
        self.json = b"[" * depth + orjson.dumps(leaf) + b"]" * depth


def encode(value: Any) -> bytes:
    """JSON of ``value`` with every ``Nested`` spliced in as its raw text."""
    if isinstance(value, Nested):
        return value.json
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + encode(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return orjson.dumps(value)


async def post_raw(gw: GatewayHarness, body: bytes) -> tuple[Any, float, int]:
    """Send ``body``; the response, how long it took and the peak of memory allocated meanwhile."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        r = await gw.client.post(
            "/v2/models/churn/infer",
            content=body,
            headers={**gw.auth(), "Content-Type": "application/json"},
        )
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return r, elapsed, peak


HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    # The 80-byte stall: 10**12 rows of nothing.
    "a trillion empty rows": ({"inputs": [tensor("age", [10**12, 0], [])]}, "inputs.age.shape"),
    "a zero-width inner dimension": (
        {"inputs": [tensor("history", [1, 10**12, 0], [], "FP64")]},
        "inputs.history.shape",
    ),
    "more rows than max_rows": ({"inputs": [tensor("age", [101], list(range(101)))]}, "inputs.age.shape"),
    "more dimensions than the signature": (
        {"inputs": [tensor("age", [1] * 5000, [1])]},
        "inputs.age.shape",
    ),
    "a matrix with a trillion empty rows": (
        {"inputs": [tensor("input-0", [10**12, 0], [])]},
        "inputs.input-0.shape",
    ),
    "data nested deeper than the shape": (
        {"inputs": [tensor("age", [1], [Nested(1000)])]},
        "inputs.age.data",
    ),
    "a category nested a thousand deep": (
        {"inputs": {"age": 1, "plan": Nested(1000, "pro"), "history": [1.0]}},
        "inputs.plan",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_small_bodies_are_422_naming_the_field_at_once(gw: GatewayHarness, case: str) -> None:
    body, field = HOSTILE[case]
    raw = encode(body)
    r, elapsed, peak = await post_raw(gw, raw)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert elapsed < PROMPTLY_S, f"{case}: {elapsed:.2f} s"
    assert peak < MAX_PEAK_BYTES, f"{case}: {peak} bytes allocated for a {len(raw)}-byte body"
    assert gw.backend.calls == []


async def test_well_formed_tensors_still_pass_the_bounds(gw: GatewayHarness) -> None:
    body = {
        "inputs": [
            tensor("age", [2], [30, 40]),
            tensor("plan", [2], ["basic", "pro"], "BYTES"),
            tensor("history", [2, 3], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "FP64"),
        ]
    }
    r = await gw.client.post("/v2/models/churn/infer", json=body, headers=gw.auth())
    assert r.status_code == 200, r.text
    assert gw.backend.calls[-1][1] == [
        {"age": 30, "plan": "basic", "history": [1.0, 2.0, 3.0]},
        {"age": 40, "plan": "pro", "history": [4.0, 5.0, 6.0]},
    ]
    nested_body = {"inputs": [tensor("age", [1], [7]), tensor("plan", [1], ["pro"], "BYTES")]}
    nested_body["inputs"].append(tensor("history", [1, 2], [[1.0, 2.0]], "FP64"))
    r = await gw.client.post("/v2/models/churn/infer", json=nested_body, headers=gw.auth())
    assert r.status_code == 200, r.text
    assert gw.backend.calls[-1][1] == [{"age": 7, "plan": "pro", "history": [1.0, 2.0]}]


async def test_plain_rows_beyond_max_rows_are_422(gw: GatewayHarness) -> None:
    rows = [{"age": 1, "plan": "pro", "history": []}] * 101
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": rows}, headers=gw.auth())
    assert r.status_code == 422 and r.json()["field"] == "inputs"
    assert "100" in r.json()["detail"]


async def test_a_value_outside_the_categories_is_not_echoed_at_length(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer",
        json={"inputs": {"age": 1, "plan": "x" * 100_000, "history": []}},
        headers=gw.auth(),
    )
    assert r.status_code == 422 and r.json()["field"] == "inputs.plan"
    assert len(r.content) < 2_000


async def test_a_pii_value_is_never_quoted_in_an_error() -> None:
    signature = Signature(
        inputs=[FieldSpec(name="salary", type="int", maximum=10**6, pii=True)],
        outputs=[FieldSpec(name="score", type="float")],
    )
    routes = snapshot(route("payroll", [RouteArm(version=1, weight=100)], signature=signature))
    async with running_gateway(routes) as gw:
        r = await gw.client.post(
            "/v2/models/payroll/infer", json={"inputs": {"salary": 7654321}}, headers=gw.auth()
        )
    assert r.status_code == 422 and r.json()["field"] == "inputs.salary"
    assert "7654321" not in r.text


async def test_gzip_and_deflate_bodies_are_inflated_and_bounded() -> None:
    """tritonclient's ``request_compression_algorithm``: a compressed body answers as the plain one;
    a small one that inflates past the body limit is a 413 at once, memory flat; an unknown
    encoding is a 415 and a corrupt body a 400, each as problem+json."""
    import gzip
    import zlib

    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], signature=SIGNATURE))
    async with running_gateway(routes, max_body_mb=1.0) as h:
        headers = h.auth()
        plain = orjson.dumps({"inputs": {"age": 41, "plan": "pro", "history": [0.5, 1.5]}})
        expected = await h.client.post("/v2/models/churn/infer", content=plain, headers=headers)
        assert expected.status_code == 200, expected.text
        for encoding, data in (
            ("gzip", gzip.compress(plain)),
            ("deflate", zlib.compress(plain)),
            ("gzip", gzip.compress(plain[:30]) + gzip.compress(plain[30:])),  # two gzip members
        ):
            for path in ("/v2/models/churn/infer", "/v2/models/churn/versions/1/infer"):
                r = await h.client.post(path, content=data, headers={**headers, "Content-Encoding": encoding})
                assert r.status_code == 200, (encoding, path, r.text)
                same = {k: v for k, v in expected.json().items() if k not in ("id", "request_id")}
                assert {k: v for k, v in r.json().items() if k in same} == same
        # Routes behind FastAPI's router get the same layer (build_app): the inflated JSON is what
        # the route validates (a wrong type named by field, not a JSON decode error).
        index = await h.client.post(
            "/v2/repository/index",
            content=gzip.compress(b'{"ready": "perhaps"}'),
            headers={**headers, "Content-Encoding": "gzip"},
        )
        assert index.status_code == 422 and "ready" in index.text, index.text

        bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]")  # 64 MB of JSON in ~64 KB
        assert len(bomb) < 128 * 1024
        tracemalloc.start()
        t0 = time.monotonic()
        r = await h.client.post(
            "/v2/models/churn/infer", content=bomb, headers={**headers, "Content-Encoding": "gzip"}
        )
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert r.status_code == 413, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "inflates past" in r.json()["detail"]
        assert elapsed < PROMPTLY_S and peak < MAX_PEAK_BYTES, (elapsed, peak)

        r = await h.client.post(
            "/v2/models/churn/infer", content=plain, headers={**headers, "Content-Encoding": "br"}
        )
        assert r.status_code == 415 and "gzip, deflate or identity" in r.json()["detail"]
        r = await h.client.post(
            "/v2/models/churn/infer",
            content=b"not gzip at all",
            headers={**headers, "Content-Encoding": "gzip"},
        )
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        truncated = gzip.compress(plain)[:-12]
        r = await h.client.post(
            "/v2/models/churn/infer", content=truncated, headers={**headers, "Content-Encoding": "gzip"}
        )
        assert r.status_code == 400, r.text
