"""tritonclient.grpc against the gateway's gRPC port, the model served by a real pool deployment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from fleet_sdk.embedded_broker import free_port
from support.gateway import running_gateway
from support.serving import BuiltModel, pool_routes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]

T = TypeVar("T")


async def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # tritonclient.grpc blocks; the gateway it calls runs on this test's event loop.
    return await asyncio.to_thread(call, *args, **kwargs)


async def test_tritonclient_grpc_infers_reads_metadata_and_readiness(
    ray_cluster: str, pool: tuple[str, BuiltModel]
) -> None:
    app, built = pool
    spec = built.spec
    routes = pool_routes(app, spec)
    async with running_gateway(
        routes, ray_backend=True, ray_address=ray_cluster, grpc_port=free_port()
    ) as gw:
        client = triton.InferenceServerClient(f"127.0.0.1:{gw.app.state.grpc.bound_port}")
        try:
            assert await off_loop(client.is_server_live)
            deadline = time.monotonic() + 60
            while not await off_loop(client.is_server_ready):
                assert time.monotonic() < deadline, (await gw.client.get("/v2/health/ready")).text
                await asyncio.sleep(0.2)
            headers = {"authorization": gw.auth(teams=[spec.team])["Authorization"]}
            assert await off_loop(client.is_model_ready, spec.model, headers=headers)
            assert await off_loop(client.is_model_ready, spec.model, "1", headers=headers)

            meta = await off_loop(client.get_model_metadata, spec.model, headers=headers)
            names = [f.name for f in spec.signature.inputs]
            assert meta.name == spec.model and list(meta.versions) == ["1"]
            assert [t.name for t in meta.inputs] == names
            assert all(t.datatype == "FP64" and list(t.shape) == [-1] for t in meta.inputs)

            # One matrix tensor of the features in signature order, FP32 as a numpy user sends it.
            frame = built.frame.head(5)[names].to_numpy(dtype=np.float32)
            matrix = triton.InferInput("input-0", list(frame.shape), "FP32")
            matrix.set_data_from_numpy(frame)
            result = await off_loop(
                client.infer, spec.model, [matrix], headers=headers, request_id="triton-1"
            )
            response = result.get_response()
            assert response.model_version == "1" and response.id == "triton-1"
            [output] = response.outputs
            predicted = result.as_numpy(output.name).tolist()
            expected = built.estimator.predict(built.frame.head(5)[names].astype(np.float32).astype(float))
            assert predicted == expected.tolist()

            # One tensor per feature, as the signature names them (FP64, raw contents).
            columns = []
            for name in names:
                column = triton.InferInput(name, [3], "FP64")
                column.set_data_from_numpy(built.frame.head(3)[name].to_numpy(dtype=np.float64))
                columns.append(column)
            result = await off_loop(client.infer, spec.model, columns, model_version="1", headers=headers)
            assert result.as_numpy(output.name).tolist() == built.expected(3)

            with pytest.raises(InferenceServerException) as caught:
                await off_loop(client.infer, spec.model, columns)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            assert "bearer token is required" in caught.value.message()
        finally:
            await off_loop(client.close)
