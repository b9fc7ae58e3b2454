"""``tritonclient.http`` with its defaults (binary tensors in and out) against the gateway on a real
Ray cluster: readiness, metadata, inference, and the gateway's errors as the client's messages.

The gateway listens on a loopback port (tritonclient speaks real HTTP); the client is synchronous
(gevent), so its calls run on a thread of their own while the gateway serves on the test's loop.
The pool (``pool``) comes from this folder's conftest, shared with the other Ray tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fleet_core.auth import Role
from fleet_gateway.app import create_app
from support.gateway import gateway_settings
from support.http import serving
from support.serving import BuiltModel, pool_routes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]

T = TypeVar("T")


class Gateway:
    """A tritonclient for the gateway, and tokens. The client is gevent-based: its connections
    belong to the thread that made them, so every call runs on one thread of its own."""

    def __init__(self, url: str, tokens: Any, team: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tritonclient")
        address = url.removeprefix("http://")
        self.client = self._thread.submit(
            lambda: triton.InferenceServerClient(url=address, network_timeout=60)
        ).result()
        self._tokens = tokens
        self.team = team

    def auth(self, teams: list[str] | None = None) -> dict[str, str]:
        """Fresh headers for one call: tritonclient's infer adds Inference-Header-Content-Length
        to the dict it is given, which a later JSON-only call would then send too."""
        token, _, _ = self._tokens.issue("triton-user", Role.VIEWER, teams or [self.team])
        return {"Authorization": f"Bearer {token}"}

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def close(self) -> None:
        self._thread.submit(self.client.close).result()
        self._thread.shutdown()


@pytest.fixture
async def gateway(ray_cluster: str, pool: tuple[str, BuiltModel]) -> AsyncIterator[Gateway]:
    app_name, built = pool
    spec = built.spec
    routes = pool_routes(app_name, spec)
    app = create_app(gateway_settings(ray_address=ray_cluster), routes=routes)
    async with serving(app) as url:
        gw = Gateway(url, app.state.tokens, spec.team)
        deadline = time.monotonic() + 60
        while not await gw.call(gw.client.is_server_ready):
            assert time.monotonic() < deadline, "the gateway did not become ready"
            await asyncio.sleep(0.2)
        try:
            yield gw
        finally:
            gw.close()


def feature_inputs(built: BuiltModel, n: int) -> list[triton.InferInput]:
    """One FP64 tensor per feature, binary (tritonclient's default)."""
    inputs = []
    for name in built.frame.columns:
        tensor = triton.InferInput(name, [n], "FP64")
        tensor.set_data_from_numpy(built.frame[name].head(n).to_numpy(dtype=np.float64))
        inputs.append(tensor)
    return inputs


async def test_health_metadata_and_readiness_through_tritonclient(
    gateway: Gateway, pool: tuple[str, BuiltModel]
) -> None:
    _, built = pool
    model = built.spec.model
    client = gateway.client
    assert await gateway.call(client.is_server_live)
    assert await gateway.call(client.is_server_ready)
    assert await gateway.call(lambda: client.is_model_ready(model, headers=gateway.auth()))
    assert await gateway.call(lambda: client.is_model_ready(model, "1", headers=gateway.auth()))
    server = await gateway.call(client.get_server_metadata)
    assert "binary_tensor_data" in server["extensions"]
    metadata = await gateway.call(lambda: client.get_model_metadata(model, headers=gateway.auth()))
    assert metadata["name"] == model
    assert metadata["versions"] == ["1"]
    assert [t["name"] for t in metadata["inputs"]] == list(built.frame.columns)
    assert metadata["inputs"][0] == {"name": "sepal", "datatype": "FP64", "shape": [-1]}
    assert metadata["outputs"] == [{"name": "prediction", "datatype": "INT64", "shape": [-1]}]


async def test_infer_with_tritonclients_defaults_sends_and_gets_binary_tensors(
    gateway: Gateway, pool: tuple[str, BuiltModel]
) -> None:
    _, built = pool
    model = built.spec.model
    inputs = feature_inputs(built, 6)
    result = await gateway.call(
        lambda: gateway.client.infer(model, inputs, headers=gateway.auth(), request_id="t-1")
    )
    response = result.get_response()
    assert response["model_name"] == model and response["model_version"] == "1"
    assert response["id"] == "t-1"
    # Binary out: the output carries binary_data_size and no JSON data.
    assert response["outputs"][0]["parameters"] == {"binary_data_size": 6 * 8}
    assert "data" not in response["outputs"][0]
    assert result.as_numpy("prediction").tolist() == built.expected(6)

    # One [rows, features] FP32 matrix, to an explicit version.
    matrix = triton.InferInput("input", [4, 3], "FP32")
    matrix.set_data_from_numpy(built.frame.head(4).to_numpy(dtype=np.float32))
    result = await gateway.call(
        lambda: gateway.client.infer(model, [matrix], model_version="1", headers=gateway.auth())
    )
    assert result.as_numpy("prediction").tolist() == built.expected(4)

    # JSON in, binary out only for the requested output when it asks.
    json_inputs = feature_inputs(built, 3)
    for tensor in json_inputs:
        tensor.set_data_from_numpy(built.frame[tensor.name()].head(3).to_numpy(), binary_data=False)
    asked = [triton.InferRequestedOutput("prediction", binary_data=False)]
    result = await gateway.call(
        lambda: gateway.client.infer(model, json_inputs, outputs=asked, headers=gateway.auth())
    )
    assert result.get_response()["outputs"][0]["data"] == built.expected(3)
    assert result.as_numpy("prediction").tolist() == built.expected(3)


async def test_gateway_errors_reach_tritonclient_as_their_messages(
    gateway: Gateway, pool: tuple[str, BuiltModel]
) -> None:
    _, built = pool
    model = built.spec.model
    client = gateway.client

    with pytest.raises(InferenceServerException) as err:
        await gateway.call(
            lambda: client.infer("no-such-model", feature_inputs(built, 1), headers=gateway.auth())
        )
    assert err.value.status() == "404"
    assert "no-such-model" in err.value.message()
    assert "exception occurred in the client" not in err.value.message()

    # A bad input: two rows in one feature, one in the others.
    inputs = feature_inputs(built, 1)
    inputs[1] = triton.InferInput("petal", [2], "FP64")
    inputs[1].set_data_from_numpy(np.array([1.0, 2.0]))
    with pytest.raises(InferenceServerException) as err:
        await gateway.call(lambda: client.infer(model, inputs, headers=gateway.auth()))
    assert err.value.status() == "422"
    assert err.value.message().startswith("inputs.petal: has 2 rows")

    # Binary bytes that do not match the tensor's shape.
    short = triton.InferInput("sepal", [1], "FP64")
    short.set_data_from_numpy(np.array([1.0]))
    short.set_shape([2])  # the client checks the shape only when data is set
    with pytest.raises(InferenceServerException) as err:
        await gateway.call(
            lambda: client.infer(model, [short, *feature_inputs(built, 2)[1:]], headers=gateway.auth())
        )
    assert err.value.status() == "422"
    assert err.value.message().startswith("inputs.sepal: carries 8 bytes")

    with pytest.raises(InferenceServerException) as err:
        await gateway.call(lambda: client.get_model_metadata(model, headers=gateway.auth(["other-team"])))
    assert err.value.status() == "403"
    assert "other-team" not in err.value.message() and built.spec.team in err.value.message()

    with pytest.raises(InferenceServerException) as err:
        await gateway.call(lambda: client.get_model_metadata(model))  # no token
    assert err.value.status() == "401"
    assert err.value.message()
