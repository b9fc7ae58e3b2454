"""The Open Inference Protocol over gRPC: a grpc.aio channel against the gateway's gRPC port,
routes injected and an in-memory backend, sharing the data plane with HTTP."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2

from fleet_core.events import AuditRecorded, RouteArm, Topic, parse_event
from fleet_core.tensor_bytes import encode_tensor_bytes
from fleet_gateway.backend import ModelFailed, ModelUnavailable
from fleet_gateway.grpc_gen import grpc_predict_v2_pb2 as pb
from fleet_gateway.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc
from fleet_sdk.embedded_broker import free_port
from support.gateway import CollectingTransport, GatewayHarness, route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}
ROUTES = snapshot(
    route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)]),
    route("fraud", [RouteArm(version=4, weight=100)], team="payments"),
)


class Grpc:
    """A gateway with its gRPC port open, a stub on it, and the HTTP harness beside it."""

    def __init__(self, gw: GatewayHarness, stub: pb_grpc.GRPCInferenceServiceStub, port: int) -> None:
        self.gw = gw
        self.stub = stub
        self.port = port

    def auth(self, **kw: Any) -> tuple[tuple[str, str], ...]:
        return (("authorization", self.gw.auth(**kw)["Authorization"]),)


@asynccontextmanager
async def grpc_gateway(**overrides: Any) -> AsyncIterator[Grpc]:
    overrides.setdefault("grpc_port", free_port())
    async with running_gateway(overrides.pop("routes", ROUTES), **overrides) as gw:
        port = gw.app.state.grpc.bound_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Grpc(gw, pb_grpc.GRPCInferenceServiceStub(channel), port)


@pytest.fixture
async def g() -> AsyncIterator[Grpc]:
    async with grpc_gateway(max_body_mb=0.01) as harness:
        yield harness


def raw_request(
    rows: list[dict[str, Any]], *, model: str = "churn", version: str = ""
) -> pb.ModelInferRequest:
    """Column tensors with raw contents, as tritonclient.grpc sends them."""
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype in (("age", "INT64"), ("income", "FP64"), ("email", "BYTES")):
        request.inputs.add(name=name, datatype=datatype, shape=[len(rows)])
        request.raw_input_contents.append(encode_tensor_bytes(datatype, [r[name] for r in rows]))
    return request


def typed_request(rows: list[dict[str, Any]], *, version: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="churn", model_version=version, id="client-7")
    age = request.inputs.add(name="age", datatype="INT64", shape=[len(rows)])
    age.contents.int64_contents.extend(r["age"] for r in rows)
    income = request.inputs.add(name="income", datatype="FP64", shape=[len(rows)])
    income.contents.fp64_contents.extend(r["income"] for r in rows)
    email = request.inputs.add(name="email", datatype="BYTES", shape=[len(rows)])
    email.contents.bytes_contents.extend(r["email"].encode() for r in rows)
    return request


def fp64(raw: bytes) -> list[float]:
    return np.frombuffer(raw, dtype="<f8").tolist()


def details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[Any]]:
    """The ErrorInfo and the other details of a call's rich status."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0] and status.message == error.details()
    info, others = None, []
    for item in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if item.Is(kind.DESCRIPTOR):
                message = kind()
                item.Unpack(message)
                if isinstance(message, error_details_pb2.ErrorInfo):
                    info = message
                else:
                    others.append(message)
    assert info is not None
    return info, others


async def test_raw_contents_are_answered_with_raw_outputs_and_the_http_headers_as_metadata(g: Grpc) -> None:
    call = g.stub.ModelInfer(
        raw_request([ROW, {**ROW, "age": 7}]), metadata=(*g.auth(), ("x-request-id", "rid-grpc-1"))
    )
    response = await call
    assert response.model_name == "churn" and response.model_version == "1"
    assert response.id == "rid-grpc-1"
    [output] = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("score", "FP64", [2])
    assert fp64(response.raw_output_contents[0]) == [10.0, 11.0]
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-request-id"] == "rid-grpc-1"
    assert trailing["x-fleet-model-version"] == "1"
    assert trailing["x-fleet-feedback-receipt"]
    assert g.gw.backend.calls[-1] == ("churn:1", [ROW, {**ROW, "age": 7}])


async def test_typed_contents_reach_the_model_as_the_same_rows_as_http_json(g: Grpc) -> None:
    rows = [ROW, {"age": 30, "income": 1.5, "email": "b@x.io"}]
    response = await g.stub.ModelInfer(typed_request(rows, version="2"), metadata=g.auth())
    assert response.model_version == "2" and response.id == "client-7"
    assert fp64(response.raw_output_contents[0]) == [20.0, 21.0]
    grpc_rows = g.gw.backend.calls[-1]
    r = await g.gw.client.post(
        "/v2/models/churn/versions/2/infer", json={"inputs": rows}, headers=g.gw.auth()
    )
    assert r.status_code == 200
    assert g.gw.backend.calls[-1] == grpc_rows


async def test_a_matrix_tensor_follows_the_signature_order(g: Grpc) -> None:
    request = pb.ModelInferRequest(model_name="churn")
    request.inputs.add(name="input-0", datatype="FP64", shape=[2, 2])
    request.raw_input_contents.append(encode_tensor_bytes("FP64", [1, 2.5, 3, 4.5]))
    routes = snapshot(
        route("churn", [RouteArm(version=1, weight=100)], signature=_numeric_signature()),
    )
    async with grpc_gateway(routes=routes) as harness:
        response = await harness.stub.ModelInfer(request, metadata=harness.auth())
        assert fp64(response.raw_output_contents[0]) == [10.0, 11.0]
        assert harness.gw.backend.calls[-1] == ("churn:1", [{"a": 1.0, "b": 2.5}, {"a": 3.0, "b": 4.5}])


def _numeric_signature() -> Any:
    from fleet_core.schemas import FieldSpec, Signature

    return Signature(
        inputs=[FieldSpec(name="a", type="float"), FieldSpec(name="b", type="float")],
        outputs=[FieldSpec(name="score", type="float")],
    )


async def test_an_invalid_value_is_invalid_argument_naming_the_field_and_never_reaches_the_model(
    g: Grpc,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelInfer(raw_request([{**ROW, "age": 200}]), metadata=g.auth())
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("inputs.age:") and "maximum" in error.details()
    info, others = details(error)
    assert info.reason == "INVALID_INPUT" and info.domain == "modelfleet.dev"
    assert info.metadata["field"] == "inputs.age" and info.metadata["status"] == "422"
    assert info.metadata["type"].endswith("/invalid-input")
    [bad] = [o for o in others if isinstance(o, error_details_pb2.BadRequest)]
    assert [v.field for v in bad.field_violations] == ["inputs.age"]
    trailing = dict(error.trailing_metadata())
    assert trailing["x-fleet-model-version"] == "1" and trailing["x-request-id"]
    assert g.gw.backend.calls == []


async def test_requested_outputs_are_answered_or_refused_naming_the_output(g: Grpc) -> None:
    request = raw_request([ROW])
    request.outputs.add(name="score")
    response = await g.stub.ModelInfer(request, metadata=g.auth())
    assert [o.name for o in response.outputs] == ["score"]
    calls = len(g.gw.backend.calls)
    request.outputs.add(name="proba")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelInfer(request, metadata=g.auth())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[0].metadata["field"] == "outputs[1].name"
    assert len(g.gw.backend.calls) == calls


@pytest.mark.parametrize(
    ("mangle", "field"),
    [
        (lambda r: r.raw_input_contents.pop(), "raw_input_contents"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 3), "inputs.age"),
        (lambda r: setattr(r.inputs[1], "datatype", "FLOAT"), "inputs.income.datatype"),
        (lambda r: r.inputs[0].shape.__setitem__(0, -1), "inputs.age.shape"),
        (lambda r: setattr(r, "model_version", "one"), "model_version"),
        (lambda r: setattr(r, "model_name", "Not A Name"), "model_name"),
        (lambda r: r.inputs[0].contents.int64_contents.append(1), "inputs.age.contents"),
    ],
)
async def test_malformed_tensors_are_invalid_argument_naming_the_field(
    g: Grpc, mangle: Any, field: str
) -> None:
    request = raw_request([ROW])
    mangle(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelInfer(request, metadata=g.auth())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert details(caught.value)[0].metadata["field"] == field, caught.value.details()
    assert g.gw.backend.calls == []


async def test_typed_values_in_the_wrong_field_are_named(g: Grpc) -> None:
    request = typed_request([ROW])
    income = request.inputs[1]
    income.contents.ClearField("fp64_contents")
    income.contents.fp32_contents.append(1.5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelInfer(request, metadata=g.auth())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fp64_contents" in caught.value.details()
    assert details(caught.value)[0].metadata["field"] == "inputs.income.contents"


async def test_tokens_are_required_and_checked_against_the_models_team(g: Grpc) -> None:
    refused: list[AuditRecorded] = []

    async def audit(entry: AuditRecorded) -> None:
        refused.append(entry)

    g.gw.app.state.grpc.servicer.audit = audit
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "bearer token is required"),
        ((("authorization", "Bearer not-a-token"),), grpc.StatusCode.UNAUTHENTICATED, ""),
        (g.auth(teams=["payments"]), grpc.StatusCode.PERMISSION_DENIED, "team 'risk'"),
    ]
    for metadata, code, words in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelInfer(raw_request([ROW]), metadata=metadata)
        assert caught.value.code() == code
        assert words in caught.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelMetadata(pb.ModelMetadataRequest(name="churn"), metadata=metadata)
        assert caught.value.code() == code
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelReady(pb.ModelReadyRequest(name="churn"), metadata=metadata)
        assert caught.value.code() == code
    assert g.gw.backend.calls == []
    assert [(e.outcome, e.status) for e in refused[:3]] == [("denied", 401)] * 3
    assert refused[-1].status == 403 and refused[-1].actor == "viewer-user"
    assert refused[0].action == "GRPC /inference.GRPCInferenceService/ModelInfer"
    assert refused[0].resource == "/v2/models/churn" and refused[0].actor == "anonymous"
    # Another team's model, with a token of that team, is answered.
    response = await g.stub.ModelInfer(raw_request([ROW], model="fraud"), metadata=g.auth(teams=["payments"]))
    assert response.model_version == "4"


async def test_unknown_models_and_unserved_versions_are_not_found(g: Grpc) -> None:
    for request, field in (
        (raw_request([ROW], model="nope"), "model"),
        (raw_request([ROW], version="9"), "version"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelInfer(request, metadata=g.auth())
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value)[0].metadata["field"] == field


async def test_model_failures_map_to_unavailable_and_internal() -> None:
    async with grpc_gateway() as g:
        g.gw.backend.fail["churn:1"] = ModelUnavailable("no replica of churn:1 answered in time")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelInfer(raw_request([ROW]), metadata=g.auth())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "no replica of churn:1 answered in time"
        assert dict(caught.value.trailing_metadata())["retry-after"] == "1"
        [retry] = [o for o in details(caught.value)[1] if isinstance(o, error_details_pb2.RetryInfo)]
        assert retry.retry_delay.seconds == 1

        g.gw.backend.fail["churn:1"] = ModelFailed("churn:1 raised ValueError: bad")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelInfer(raw_request([ROW]), metadata=g.auth())
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert details(caught.value)[0].metadata["status"] == "502"


async def test_the_rate_limit_is_resource_exhausted_with_retry_info() -> None:
    async with grpc_gateway(rate_limit_rps=0.01, rate_limit_burst=1) as g:
        metadata = g.auth()
        await g.stub.ModelInfer(raw_request([ROW]), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.stub.ModelInfer(raw_request([ROW]), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit" in caught.value.details()
        assert any(isinstance(o, error_details_pb2.RetryInfo) for o in details(caught.value)[1])


async def test_a_message_over_the_body_limit_is_refused_before_it_is_read(g: Grpc) -> None:
    rows = [ROW] * 400  # > 10 KiB
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelInfer(raw_request(rows), metadata=g.auth())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert g.gw.backend.calls == []


async def test_metadata_and_readiness(g: Grpc) -> None:
    assert (await g.stub.ServerLive(pb.ServerLiveRequest())).live is True
    assert (await g.stub.ServerReady(pb.ServerReadyRequest())).ready is True
    server = await g.stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "modelfleet-gateway" and server.version
    meta = await g.stub.ModelMetadata(pb.ModelMetadataRequest(name="churn"), metadata=g.auth())
    assert meta.name == "churn" and list(meta.versions) == ["1", "2"]
    assert meta.platform == "fleet-sklearn"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("age", "INT64", [-1]),
        ("income", "FP64", [-1]),
        ("email", "BYTES", [-1]),
    ]
    assert [(t.name, t.datatype) for t in meta.outputs] == [("score", "FP64")]
    one = await g.stub.ModelMetadata(pb.ModelMetadataRequest(name="churn", version="2"), metadata=g.auth())
    assert one.name == "churn"
    assert (await g.stub.ModelReady(pb.ModelReadyRequest(name="churn"), metadata=g.auth())).ready is True
    ready = await g.stub.ModelReady(pb.ModelReadyRequest(name="churn", version="2"), metadata=g.auth())
    assert ready.ready is True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await g.stub.ModelReady(pb.ModelReadyRequest(name="churn", version="9"), metadata=g.auth())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    g.gw.backend.is_ready = False
    assert (await g.stub.ServerReady(pb.ServerReadyRequest())).ready is False
    assert (await g.stub.ModelReady(pb.ModelReadyRequest(name="churn"), metadata=g.auth())).ready is False


async def test_calls_are_logged_and_counted_like_http() -> None:
    transport = CollectingTransport()
    async with grpc_gateway(log_transport=transport) as g:
        await g.stub.ModelInfer(raw_request([ROW]), metadata=(*g.auth(), ("x-request-id", "rid-g")))
        with pytest.raises(grpc.aio.AioRpcError):
            await g.stub.ModelInfer(raw_request([{**ROW, "age": -1}]), metadata=g.auth())
        await g.gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=g.gw.auth())
        for _ in range(200):
            if len(transport.records) >= 2:
                break
            await asyncio.sleep(0.01)
        metrics = (await g.gw.client.get("/metrics")).text
    logged = [parse_event(Topic.INFERENCE_LOGGED, value).data for _, value in transport.records]
    assert [(e.request_id, e.status) for e in logged][:1] == [("rid-g", "ok")]
    assert logged[0].inputs[0]["email"].startswith("sha256:")
    # Model metrics are the data plane's: gRPC and HTTP requests count in the same series.
    assert (
        'fleet_gateway_requests_total{arm="primary",model="churn",status="200",team="risk",version="1"} 2.0'
        in metrics
    )
    assert 'fleet_grpc_requests_total{code="OK",method="ModelInfer",service="gateway"} 1.0' in metrics
    assert (
        'fleet_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer",service="gateway"} 1.0'
        in metrics
    )


async def test_calls_in_flight_finish_at_shutdown_and_new_ones_are_refused() -> None:
    async with grpc_gateway() as g:
        g.gw.backend.delay_s["churn:1"] = 0.5
        port = g.port
        pending = asyncio.ensure_future(g.stub.ModelInfer(raw_request([ROW]), metadata=g.auth()))
        while not g.gw.backend.calls:
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stop = asyncio.ensure_future(g.gw.app.state.grpc.stop(5.0))
            await asyncio.sleep(0.05)
            response = await pending
            assert fp64(response.raw_output_contents[0]) == [10.0]
            await stop
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ServerLive(pb.ServerLiveRequest(), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_port_can_be_turned_off() -> None:
    async with running_gateway(ROUTES, grpc_port=0) as gw:
        assert gw.app.state.grpc is None


async def test_tritonclient_grpc_reads_outputs_and_errors(g: Grpc) -> None:
    import tritonclient.grpc.aio as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(f"127.0.0.1:{g.port}")
    headers = {"authorization": g.auth()[0][1]}
    try:
        inputs = []
        for name, datatype, values in (
            ("age", "INT64", np.array([42, 7], dtype=np.int64)),
            ("income", "FP64", np.array([1.5, 2.5])),
            ("email", "BYTES", np.array([b"a@x.io", b"b@x.io"], dtype=np.object_)),
        ):
            tensor = triton.InferInput(name, [2], datatype)
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        result = await client.infer("churn", inputs, headers=headers)
        assert result.as_numpy("score").tolist() == [10.0, 11.0]
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready("churn", headers=headers)
        meta = await client.get_model_metadata("churn", headers=headers, as_json=True)
        assert meta["name"] == "churn" and meta["inputs"][0] == {
            "name": "age",
            "datatype": "INT64",
            "shape": ["-1"],
        }
        inputs[0].set_data_from_numpy(np.array([42, 200], dtype=np.int64))
        with pytest.raises(InferenceServerException) as caught:
            await client.infer("churn", inputs, headers=headers)
        assert caught.value.message().startswith(
            "inputs[1].age: 200 is above"
        ) and "StatusCode.INVALID_ARGUMENT" in str(caught.value.status())
    finally:
        await client.close()


def test_bytes_outputs_keep_their_length_prefix() -> None:
    from fleet_gateway.grpc_codec import _encode

    assert _encode("INT64", [1, None]) == ("BYTES", encode_tensor_bytes("BYTES", ["1", "null"]))
    datatype, raw = _encode("BYTES", ["yes", [1, 2]])
    assert datatype == "BYTES"
    assert raw == struct.pack("<I", 3) + b"yes" + struct.pack("<I", 5) + b"[1,2]"


async def test_a_gzip_compressed_call_is_answered(g: Grpc) -> None:
    """tritonclient.grpc's ``compression_algorithm="gzip"``: grpcio inflates the message."""
    response = await g.stub.ModelInfer(
        raw_request([ROW]), metadata=g.auth(), compression=grpc.Compression.Gzip
    )
    assert fp64(response.raw_output_contents[0]) == [10.0]
