"""Triton's binary tensor extension on the gateway: framing in, framing out, and its refusals.

Bodies are built by hand where a test needs exact bytes, and by ``tritonclient.http``'s own
request builder and response parser where the point is that the client's defaults work.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from fleet_core.events import RouteArm
from fleet_core.schemas import FieldSpec, Signature
from fleet_core.serving import ServedVersion
from fleet_core.tensor_bytes import encode_tensor_bytes
from support.gateway import FakeBackend, GatewayHarness, route, running_gateway, snapshot

HEADER = "Inference-Header-Content-Length"
# Every input of this signature can travel in binary: int, float, bool and string columns.
SIGNATURE = Signature(
    inputs=[
        FieldSpec(name="age", type="int", minimum=0, maximum=130),
        FieldSpec(name="income", type="float"),
        FieldSpec(name="vip", type="bool"),
        FieldSpec(name="email", type="string"),
    ],
    outputs=[FieldSpec(name="score", type="float")],
)
LABELS = Signature(inputs=SIGNATURE.inputs, outputs=[FieldSpec(name="label", type="string")])


@dataclass
class LabelBackend(FakeBackend):
    """Answers a string label per row, or, for ``nulls``, a null among numbers."""

    nulls: bool = False
    pairs: bool = False

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        await super().predict(served, rows)
        if self.pairs:
            return [{"label": f"c{row['age']}", "score": row["age"] / 2} for row in rows]
        if self.nulls:
            return [None if i == 0 else float(i) for i in range(len(rows))]
        return [f"class-{row['age'] % 3}" for row in rows]


@pytest.fixture
async def gw() -> AsyncIterator[GatewayHarness]:
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], signature=SIGNATURE))
    async with running_gateway(routes, max_rows=50) as h:
        yield h


def framed(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    """A body of ``header`` as JSON followed by ``chunks``, and the header naming its length."""
    head = orjson.dumps(header)
    return b"".join([head, *chunks]), {HEADER: str(len(head))}


def binary_input(name: str, datatype: str, values: list[Any]) -> tuple[dict[str, Any], bytes]:
    raw = encode_tensor_bytes(datatype, values)
    return {
        "name": name,
        "shape": [len(values)],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }, raw


def split_response(body: bytes, header_length: int) -> tuple[dict[str, Any], bytes]:
    return orjson.loads(body[:header_length]), body[header_length:]


async def post(gw: GatewayHarness, body: bytes, headers: dict[str, str | bytes]) -> Any:
    return await gw.client.post("/v2/models/churn/infer", content=body, headers={**gw.auth(), **headers})


# --------------------------------------------------------------------------- requests


async def test_binary_inputs_take_their_bytes_in_the_order_they_are_listed(gw: GatewayHarness) -> None:
    # Two inputs whose sizes differ: swapping their bytes would give other values (or a 422).
    age, age_raw = binary_input("age", "INT32", [30, 41])
    income, income_raw = binary_input("income", "FP64", [1.5, -2.25])
    vip, vip_raw = binary_input("vip", "BOOL", [True, False])
    email, email_raw = binary_input("email", "BYTES", ["a@x.io", "bé@x.io"])
    body, headers = framed({"inputs": [age, income, vip, email]}, age_raw, income_raw, vip_raw, email_raw)
    r = await post(gw, body, headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")  # no binary output was asked
    assert HEADER.lower() not in r.headers
    assert r.json()["outputs"] == [{"name": "score", "shape": [2], "datatype": "FP64", "data": [10.0, 11.0]}]
    assert gw.backend.calls[-1] == (
        "churn:1",
        [
            {"age": 30, "income": 1.5, "vip": True, "email": "a@x.io"},
            {"age": 41, "income": -2.25, "vip": False, "email": "bé@x.io"},
        ],
    )


async def test_binary_and_json_inputs_mix_in_one_request(gw: GatewayHarness) -> None:
    income, income_raw = binary_input("income", "FP32", [0.5, 4.0])
    email, email_raw = binary_input("email", "BYTES", ["p@x.io", "q@x.io"])
    body, headers = framed(
        {
            "inputs": [
                {"name": "age", "shape": [2], "datatype": "INT64", "data": [7, 8]},
                income,
                {"name": "vip", "shape": [2], "datatype": "BOOL", "data": [False, True]},
                email,
            ]
        },
        income_raw,
        email_raw,
    )
    r = await post(gw, body, headers)
    assert r.status_code == 200, r.text
    assert gw.backend.calls[-1][1] == [
        {"age": 7, "income": 0.5, "vip": False, "email": "p@x.io"},
        {"age": 8, "income": 4.0, "vip": True, "email": "q@x.io"},
    ]


async def test_a_binary_matrix_follows_the_signature_order(gw: GatewayHarness) -> None:
    numbers = Signature(inputs=[FieldSpec(name=f"f{i}", type="float") for i in range(3)], outputs=[])
    routes = snapshot(route("m", [RouteArm(version=1, weight=100)], signature=numbers))
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": matrix.nbytes},
            }
        ]
    }
    async with running_gateway(routes) as h:
        body, headers = framed(header, matrix.tobytes())
        r = await h.client.post("/v2/models/m/infer", content=body, headers={**h.auth(), **headers})
        assert r.status_code == 200, r.text
        rows = [{"f0": 0.0, "f1": 1.0, "f2": 2.0}, {"f0": 3.0, "f1": 4.0, "f2": 5.0}]
        assert h.backend.calls[-1][1] == rows


async def test_the_request_tritonclient_builds_by_default_is_understood(gw: GatewayHarness) -> None:
    inputs = [InferInput("age", [3], "INT64"), InferInput("income", [3], "FP32")]
    inputs += [InferInput("vip", [3], "BOOL"), InferInput("email", [3], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([1, 2, 3], dtype=np.int64))
    inputs[1].set_data_from_numpy(np.array([0.25, 0.5, 0.75], dtype=np.float32))
    inputs[2].set_data_from_numpy(np.array([True, False, True]))
    inputs[3].set_data_from_numpy(np.array([b"a", b"b", "ç".encode()], dtype=np.object_))
    body, json_size = InferenceServerClient.generate_request_body(inputs)
    assert json_size is not None  # binary inputs, and binary_data_output asked
    r = await post(gw, body, {HEADER: str(json_size)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    result = InferenceServerClient.parse_response_body(r.content, header_length=int(r.headers[HEADER]))
    assert result.as_numpy("score").tolist() == [10.0, 11.0, 12.0]
    assert [row["email"] for row in gw.backend.calls[-1][1]] == ["a", "b", "ç"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("value", ["-1", "abc", "", "1.5", "0x1", "²".encode("latin-1"), "9" * 40])
async def test_a_header_length_that_is_not_a_byte_count_is_400_naming_the_header(
    gw: GatewayHarness, value: str | bytes
) -> None:
    body, _ = framed({"inputs": []})
    r = await post(gw, body, {HEADER: value})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == HEADER
    assert gw.backend.calls == []


async def test_a_header_length_beyond_the_body_is_400(gw: GatewayHarness) -> None:
    body, _ = framed({"inputs": []})
    r = await post(gw, body, {HEADER: str(len(body) + 1)})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == HEADER
    assert "beyond" in r.json()["detail"]


async def test_a_header_length_that_cuts_the_json_is_400(gw: GatewayHarness) -> None:
    age, raw = binary_input("age", "INT64", [1])
    body, headers = framed({"inputs": [age]}, raw)
    r = await post(gw, body, {HEADER: str(int(headers[HEADER]) - 3)})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == HEADER


async def test_binary_sizes_beyond_the_body_name_the_input(gw: GatewayHarness) -> None:
    age, age_raw = binary_input("age", "INT64", [1, 2])
    income, income_raw = binary_input("income", "FP64", [1.0, 2.0])
    body, headers = framed({"inputs": [age, income]}, age_raw, income_raw[:-1])
    r = await post(gw, body, headers)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["field"] == "inputs.income.parameters.binary_data_size"
    assert "only 15 remain" in problem["detail"]


async def test_bytes_left_over_after_the_binary_inputs_are_400(gw: GatewayHarness) -> None:
    age, age_raw = binary_input("age", "INT64", [1])
    body, headers = framed({"inputs": [age]}, age_raw, b"\x00\x00")
    r = await post(gw, body, headers)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "inputs.age.parameters.binary_data_size"
    assert "add up to 8 bytes, but 10 follow" in r.json()["detail"]


async def test_bytes_after_a_json_only_header_are_400_naming_the_header(gw: GatewayHarness) -> None:
    age = {"name": "age", "shape": [1], "datatype": "INT64", "data": [1]}
    body, headers = framed({"inputs": [age]}, b"xx")
    r = await post(gw, body, headers)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == HEADER


@pytest.mark.parametrize("size", [-8, "8", 8.0, True, None])
async def test_a_binary_size_that_is_not_a_byte_count_is_422(gw: GatewayHarness, size: Any) -> None:
    age = {"name": "age", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": size}}
    body, headers = framed({"inputs": [age]}, struct.pack("<q", 5))
    r = await post(gw, body, headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "inputs.age.parameters.binary_data_size"


async def test_a_binary_size_that_disagrees_with_shape_and_datatype_is_422_naming_the_tensor(
    gw: GatewayHarness,
) -> None:
    raw = encode_tensor_bytes("INT64", [1, 2, 3])
    age = {"name": "age", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": len(raw)}}
    body, headers = framed({"inputs": [age]}, raw)
    r = await post(gw, body, headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "inputs.age"
    assert "24 bytes" in r.json()["detail"] and "needs 16" in r.json()["detail"]


async def test_binary_data_and_json_data_on_one_input_are_refused(gw: GatewayHarness) -> None:
    age, raw = binary_input("age", "INT64", [1])
    body, headers = framed({"inputs": [{**age, "data": [1]}]}, raw)
    r = await post(gw, body, headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "inputs.age.data"


async def test_a_binary_shape_over_the_row_limit_is_refused_before_decoding(gw: GatewayHarness) -> None:
    raw = bytes(51)
    vip = {"name": "vip", "shape": [51], "datatype": "BOOL", "parameters": {"binary_data_size": 51}}
    body, headers = framed({"inputs": [vip]}, raw)
    r = await post(gw, body, headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "inputs.vip.shape"
    assert "limit is 50" in r.json()["detail"]


async def test_binary_inputs_without_the_header_are_400_naming_the_header(gw: GatewayHarness) -> None:
    age, _ = binary_input("age", "INT64", [1])
    r = await post(gw, orjson.dumps({"inputs": [age]}), {})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == HEADER
    assert gw.backend.calls == []


async def test_a_bad_value_in_binary_data_is_the_same_422_as_in_json(gw: GatewayHarness) -> None:
    inputs = [binary_input("age", "INT64", [200]), binary_input("income", "FP64", [1.0])]
    inputs += [binary_input("vip", "BOOL", [True]), binary_input("email", "BYTES", ["e@x.io"])]
    body, headers = framed({"inputs": [t for t, _ in inputs]}, *(raw for _, raw in inputs))
    r = await post(gw, body, headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"].startswith("inputs") and "age" in r.json()["field"]
    assert gw.backend.calls == []


# --------------------------------------------------------------------------- responses

JSON_INPUTS = [
    {"name": "age", "shape": [2], "datatype": "INT64", "data": [4, 5]},
    {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
    {"name": "vip", "shape": [2], "datatype": "BOOL", "data": [True, True]},
    {"name": "email", "shape": [2], "datatype": "BYTES", "data": ["a@x.io", "b@x.io"]},
]


async def test_outputs_are_binary_when_the_request_asks_for_all(gw: GatewayHarness) -> None:
    # A JSON-only request (no header) may still ask for binary outputs.
    body = orjson.dumps({"id": "c-1", "inputs": JSON_INPUTS, "parameters": {"binary_data_output": True}})
    r = await post(gw, body, {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, rest = split_response(r.content, int(r.headers[HEADER]))
    assert header == {
        "model_name": "churn",
        "model_version": "1",
        "id": "c-1",
        "outputs": [
            {"name": "score", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
        ],
    }
    assert np.frombuffer(rest, dtype="<f8").tolist() == [10.0, 11.0]
    assert r.headers["x-fleet-model-version"] == "1"
    assert r.headers["x-fleet-feedback-receipt"]


async def test_a_requested_outputs_binary_data_flag_wins_over_the_request_level_one(
    gw: GatewayHarness,
) -> None:
    body = orjson.dumps(
        {
            "inputs": JSON_INPUTS,
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "score", "parameters": {"binary_data": False}}],
        }
    )
    r = await post(gw, body, {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert HEADER.lower() not in r.headers
    assert r.json()["outputs"][0]["data"] == [10.0, 11.0]

    asked = [{"name": "score", "parameters": {"binary_data": True}}]
    body = orjson.dumps({"inputs": JSON_INPUTS, "outputs": asked})
    r = await post(gw, body, {})
    assert r.headers["content-type"] == "application/octet-stream"
    header, rest = split_response(r.content, int(r.headers[HEADER]))
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert len(rest) == 16


async def test_binary_bytes_outputs_are_length_prefixed_and_read_by_tritonclient() -> None:
    routes = snapshot(route("labels", [RouteArm(version=1, weight=100)], signature=LABELS))
    async with running_gateway(routes, backend=LabelBackend()) as h:
        inputs = [InferInput("age", [3], "INT64"), InferInput("income", [3], "FP64")]
        inputs += [InferInput("vip", [3], "BOOL"), InferInput("email", [3], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([3, 4, 5], dtype=np.int64), binary_data=False)
        inputs[1].set_data_from_numpy(np.array([1.0, 2.0, 3.0]), binary_data=False)
        inputs[2].set_data_from_numpy(np.array([True, False, True]), binary_data=False)
        inputs[3].set_data_from_numpy(np.array(["a", "b", "c"], dtype=np.object_), binary_data=False)
        body, json_size = InferenceServerClient.generate_request_body(
            inputs, outputs=[InferRequestedOutput("label", binary_data=True)]
        )
        assert json_size is None  # JSON inputs: the client sends no header
        r = await h.client.post("/v2/models/labels/infer", content=body, headers=h.auth())
        assert r.status_code == 200, r.text
        header, rest = split_response(r.content, int(r.headers[HEADER]))
        assert header["outputs"][0]["datatype"] == "BYTES"
        assert rest == encode_tensor_bytes("BYTES", ["class-0", "class-1", "class-2"])
        result = InferenceServerClient.parse_response_body(r.content, header_length=int(r.headers[HEADER]))
        assert result.as_numpy("label").tolist() == [b"class-0", b"class-1", b"class-2"]


async def test_several_binary_outputs_follow_the_json_in_outputs_order() -> None:
    both = Signature(
        inputs=SIGNATURE.inputs,
        outputs=[FieldSpec(name="label", type="string"), FieldSpec(name="score", type="float")],
    )
    routes = snapshot(route("pairs", [RouteArm(version=1, weight=100)], signature=both))
    async with running_gateway(routes, backend=LabelBackend(pairs=True)) as h:
        body = orjson.dumps({"inputs": JSON_INPUTS, "parameters": {"binary_data_output": True}})
        r = await h.client.post("/v2/models/pairs/infer", content=body, headers=h.auth())
        assert r.status_code == 200, r.text
        header, rest = split_response(r.content, int(r.headers[HEADER]))
        label, score = header["outputs"]
        assert (label["name"], score["name"]) == ("label", "score")
        labels = encode_tensor_bytes("BYTES", ["c4", "c5"])
        assert label["parameters"] == {"binary_data_size": len(labels)}
        assert score["parameters"] == {"binary_data_size": 16}
        assert rest == labels + encode_tensor_bytes("FP64", [2.0, 2.5])

        # The label in binary, the score in JSON: only the label's bytes follow.
        asked = [{"name": "label"}, {"name": "score", "parameters": {"binary_data": False}}]
        body = orjson.dumps(
            {"inputs": JSON_INPUTS, "parameters": {"binary_data_output": True}, "outputs": asked}
        )
        r = await h.client.post("/v2/models/pairs/infer", content=body, headers=h.auth())
        header, rest = split_response(r.content, int(r.headers[HEADER]))
        assert header["outputs"][1]["data"] == [2.0, 2.5]
        assert rest == labels

        # Naming one output answers only that one (OIP): the score alone, in JSON.
        body = orjson.dumps({"inputs": JSON_INPUTS, "outputs": [{"name": "score"}]})
        r = await h.client.post("/v2/models/pairs/infer", content=body, headers=h.auth())
        assert r.json()["outputs"] == [
            {"name": "score", "shape": [2], "datatype": "FP64", "data": [2.0, 2.5]}
        ]


async def test_an_output_with_a_null_stays_json_among_binary_ones() -> None:
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], signature=SIGNATURE))
    async with running_gateway(routes, backend=LabelBackend(nulls=True)) as h:
        body = orjson.dumps({"inputs": JSON_INPUTS, "parameters": {"binary_data_output": True}})
        r = await h.client.post("/v2/models/churn/infer", content=body, headers=h.auth())
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["outputs"][0]["data"] == [None, 1.0]


async def test_json_requests_keep_their_json_answers(gw: GatewayHarness) -> None:
    r = await post(gw, orjson.dumps({"inputs": JSON_INPUTS}), {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert HEADER.lower() not in r.headers
    assert r.json()["outputs"][0] == {"name": "score", "shape": [2], "datatype": "FP64", "data": [10.0, 11.0]}


async def test_server_metadata_declares_the_binary_extension(gw: GatewayHarness) -> None:
    r = await gw.client.get("/v2")
    assert "binary_tensor_data" in r.json()["extensions"]


# --------------------------------------------------------------------------- error bodies


async def test_v2_problems_carry_the_protocols_error_member(gw: GatewayHarness) -> None:
    r = await post(gw, b"{", {})
    assert r.status_code == 400
    problem = r.json()
    assert problem["error"] == problem["detail"]
    assert problem["type"].endswith("/malformed-json")

    r = await gw.client.post("/v2/models/nope/infer", json={"inputs": {"age": 1}}, headers=gw.auth())
    assert r.status_code == 404
    assert "nope" in r.json()["error"]

    r = await gw.client.get("/v2/models/churn")  # no token
    assert r.status_code == 401
    assert r.json()["error"] == r.json()["detail"]

    r = await gw.client.get("/v2/no/such/route")
    assert r.status_code == 404 and "error" in r.json()


async def test_problems_outside_v2_keep_the_plain_rfc_9457_members(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v1/feedback", json={}, headers=gw.auth())
    assert r.status_code == 422
    assert "error" not in r.json()
