"""Small pool models served inside the gateway process (``fleet_gateway.local``): real skops
artifacts loaded by the real runtimes; the Ray side is the in-memory ``FakeBackend``, whose answers
(``version * 10 + row``) tell a call that went to it from one the model answered here."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_core.errors import InvalidInput
from fleet_core.events import RouteArm, RouteTable
from fleet_core.serving import POOL_APP, Placement, ServedVersion
from fleet_gateway.backend import ModelFailed, ModelUnavailable, model_error
from fleet_gateway.local import SLOW_AFTER_CALLS, LocalModels, LocalPolicy
from fleet_gateway.settings import GatewaySettings
from fleet_sdk.cli import app as cli
from support.cli_output import printed_json
from support.gateway import SECRET, FakeBackend, running_gateway
from support.http import serving as listening
from support.serving import logistic_model, pool_routes, python_model

MB = 2**20


def _policy(**overrides: Any) -> LocalPolicy:
    values: dict[str, Any] = {
        "budget_bytes": 64 * MB,
        "max_model_bytes": 4 * MB,
        "promote_after": 2,
        "max_predict_ms": 50.0,
        "keep_s": 10.0,
    }
    values.update(overrides)
    return LocalPolicy(**values)


def _settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(jwt_secret=SECRET, home=tmp_path / "home")


def _served(spec: Any, kind: str = "pool") -> ServedVersion:
    placement = Placement.pool() if kind == "pool" else Placement.dedicated(spec.model, spec.version)
    return ServedVersion(spec=spec, placement=placement, state="ready")


async def _until_loaded(models: LocalModels, key: str, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while key not in {m.key for m in models.stats().models}:
        assert loop.time() < deadline, f"{key} never loaded in the gateway: {models.stats()}"
        await asyncio.sleep(0.05)


async def _promoted(models: LocalModels, served: ServedVersion) -> None:
    """Call ``served`` as often as it takes to be loaded here, and wait for the load."""
    for _ in range(models.policy.promote_after):
        models.get(served)
    await _until_loaded(models, served.spec.key)


async def test_a_busy_pool_model_is_answered_in_the_gateway_after_two_calls(tmp_path: Path) -> None:
    built = logistic_model(tmp_path)
    routes = pool_routes(POOL_APP, built.spec)
    row = built.rows(1)[0]
    async with running_gateway(routes, local_models_mb=64, home=tmp_path / "home") as gw:
        auth = gw.auth(Role.VIEWER, ["test"])
        for _ in range(2):  # through Ray (the fake): one call alone does not load the model here
            r = await gw.client.post(
                f"/v2/models/{built.spec.model}/infer", json={"inputs": [row]}, headers=auth
            )
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [10.0]
        models: LocalModels = gw.app.state.local_models
        await _until_loaded(models, built.spec.key)

        rows = built.rows(5)
        r = await gw.client.post(f"/v2/models/{built.spec.model}/infer", json={"inputs": rows}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == built.expected(5)  # the model's own answers, not the fake's
        assert len(gw.backend.calls) == 2

        listing = (await gw.client.get("/v1/local-models", headers=auth)).json()
        assert listing["enabled"] is True
        (entry,) = listing["models"]
        assert entry["key"] == built.spec.key and entry["calls"] == 1 and entry["team"] == "test"
        assert 0 < entry["bytes"] <= listing["loaded_bytes"] <= listing["budget_bytes"]
        assert listing["local_calls"] == 1 and listing["remote_calls"] == 2

        # Another team's viewer is not shown the model; no token, no listing.
        other = (await gw.client.get("/v1/local-models", headers=gw.auth(Role.VIEWER, ["fraud"]))).json()
        assert other["models"] == [] and other["loaded_bytes"] == listing["loaded_bytes"]
        assert (await gw.client.get("/v1/local-models")).status_code == 401

        metrics = (await gw.client.get("/metrics")).text
        assert 'fleet_gateway_model_calls_total{where="local"} 1.0' in metrics
        assert 'fleet_gateway_local_loads_total{outcome="loaded"} 1.0' in metrics


async def test_off_by_default_in_tests_and_with_zero_budget(tmp_path: Path) -> None:
    built = logistic_model(tmp_path)
    async with running_gateway(pool_routes(POOL_APP, built.spec)) as gw:
        auth = gw.auth(Role.VIEWER, ["test"])
        for _ in range(5):
            r = await gw.client.post(
                f"/v2/models/{built.spec.model}/infer", json={"inputs": built.rows(1)}, headers=auth
            )
            assert r.json()["predictions"] == [10.0]
        listing = (await gw.client.get("/v1/local-models", headers=auth)).json()
        assert listing["enabled"] is False and listing["models"] == [] and listing["local_calls"] == 0


async def test_what_never_runs_in_the_gateway(tmp_path: Path) -> None:
    models = LocalModels(_settings(tmp_path), _policy(max_model_bytes=10 * 2**10))
    models.start()
    try:
        python = _served(python_model(tmp_path))
        dedicated = _served(logistic_model(tmp_path, model="own").spec, kind="dedicated")
        big = _served(logistic_model(tmp_path, model="big").spec)
        assert models.refusal(python) == "flavor 'python' runs only on Ray"
        assert models.refusal(dedicated) == "a dedicated deployment"
        assert "over the local limit" in (models.refusal(big) or "")
        for served in (python, dedicated, big):
            for _ in range(3):
                assert models.get(served) is None
        refused = {r.key: r.reason for r in models.stats().refused}
        assert set(refused) == {python.spec.key, dedicated.spec.key, big.spec.key}
        assert models.stats().models == [] and models.loads == 0
    finally:
        await models.close()


async def test_a_full_budget_evicts_quiet_models_by_bytes_but_never_busy_ones(tmp_path: Path) -> None:
    first, second = (_served(logistic_model(tmp_path, model=m).spec) for m in ("first", "second"))
    models = LocalModels(_settings(tmp_path), _policy(keep_s=3600.0))
    models.start()
    try:
        await _promoted(models, first)
        charged = models.loaded_bytes
        # Room for one model only: the second cannot be loaded while the first was called recently.
        models.policy = dataclasses.replace(models.policy, budget_bytes=charged + 1024)
        for _ in range(2):
            models.get(second)
        await asyncio.sleep(0.3)
        assert [m.key for m in models.stats().models] == [first.spec.key]
        assert models.evictions == 0

        # Once the first has been quiet for keep_s, the second's load evicts it by bytes.
        models.policy = dataclasses.replace(models.policy, keep_s=0.0)
        await _promoted(models, second)
        assert [m.key for m in models.stats().models] == [second.spec.key]
        assert models.evictions == 1 and models.loaded_bytes <= models.policy.budget_bytes

        # The evicted model is answered by Ray again, and comes back after its calls.
        assert models.get(first) is None
        models.get(first)
        await _until_loaded(models, first.spec.key)
        assert [m.key for m in models.stats().models] == [first.spec.key]
    finally:
        await models.close()


async def test_a_model_slower_than_the_limit_goes_back_to_the_pool(tmp_path: Path) -> None:
    built = logistic_model(tmp_path)
    served = _served(built.spec)
    models = LocalModels(_settings(tmp_path), _policy(max_predict_ms=1e-6))
    models.start()
    try:
        await _promoted(models, served)
        for _ in range(SLOW_AFTER_CALLS):
            local = models.get(served)
            assert local is not None
            assert await models.predict(local, built.rows(1)) == built.expected(1)
        assert models.get(served) is None
        (refusal,) = models.stats().refused
        assert refusal.key == built.spec.key and "on average, over the local limit" in refusal.reason
        for _ in range(3):  # refused: not loaded again
            assert models.get(served) is None
        await asyncio.sleep(0.2)
        assert models.stats().models == [] and models.loads == 1
    finally:
        await models.close()


async def test_idle_models_are_unloaded(tmp_path: Path) -> None:
    built = logistic_model(tmp_path)
    served = _served(built.spec)
    models = LocalModels(_settings(tmp_path), _policy(idle_s=3600.0))
    models.start()
    try:
        await _promoted(models, served)
        assert models.unload_idle() == []
        models.policy = dataclasses.replace(models.policy, idle_s=1e-9)
        assert models.unload_idle() == [built.spec.key]
        assert models.stats().models == [] and models.loaded_bytes == 0
    finally:
        await models.close()


def _tampered(tmp_path: Path) -> Any:
    built = logistic_model(tmp_path)
    Path(built.spec.artifact_uri.removeprefix("file://")).write_bytes(b"not the registered bytes")
    return built


async def test_a_load_that_fails_leaves_the_model_on_ray(tmp_path: Path) -> None:
    built = _tampered(tmp_path)
    served = _served(built.spec)
    models = LocalModels(_settings(tmp_path), _policy())
    models.start()
    backend = FakeBackend()
    try:
        for _ in range(2):
            assert models.get(served) is None
            await backend.predict(served, built.rows(1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not models.stats().refused:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        (refusal,) = models.stats().refused
        assert refusal.reason.startswith("could not load in the gateway: ArtifactIntegrityError")
        assert models.get(served) is None and models.stats().models == []
    finally:
        await models.close()


def test_model_errors_mean_the_same_wherever_the_model_ran() -> None:
    refused = model_error("m:1", InvalidInput("bad value", field="inputs.age"))
    assert (
        isinstance(refused, InvalidInput)
        and refused.field == "inputs.age"
        and refused.detail == "m:1: bad value"
    )
    assert isinstance(model_error("m:1", ValueError("boom")), ModelFailed)
    assert "ValueError: boom" in model_error("m:1", ValueError("boom")).detail
    assert isinstance(model_error("m:1", ModelUnavailable("loading")), ModelUnavailable)


async def test_fleet_deployments_local_prints_what_the_gateway_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = logistic_model(tmp_path)
    python = python_model(tmp_path)
    routes = pool_routes(POOL_APP, built.spec)
    routes.models.extend(pool_routes(POOL_APP, python).models)
    async with running_gateway(routes, local_models_mb=64, home=tmp_path / "home") as gw:
        auth = gw.auth(Role.VIEWER, ["test"])
        for _ in range(2):
            await gw.client.post(
                f"/v2/models/{built.spec.model}/infer", json={"inputs": built.rows(1)}, headers=auth
            )
            await gw.client.post(
                f"/v2/models/{python.model}/infer", json={"inputs": [{"amount": 5.0}]}, headers=auth
            )
        await _until_loaded(gw.app.state.local_models, built.spec.key)
        async with listening(gw.app, lifespan="off") as url:
            monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
            monkeypatch.setenv("FLEET_GATEWAY_URL", url)
            monkeypatch.setenv("FLEET_TOKEN", auth["Authorization"].removeprefix("Bearer "))
            table = await asyncio.to_thread(
                CliRunner().invoke, cli, ["deployments", "local"], env={"COLUMNS": "200"}
            )
            assert table.exit_code == 0, table.output
            assert "gateway-local models:" in table.output and built.spec.key in table.output
            assert "left to the pool" in table.output and "flavor 'python' runs only on Ray" in table.output
            as_json = await asyncio.to_thread(CliRunner().invoke, cli, ["deployments", "local", "--json"])
            assert as_json.exit_code == 0, as_json.output
            view = printed_json(as_json.output)
            assert [m["key"] for m in view["models"]] == [built.spec.key]
            assert [r["key"] for r in view["refused"]] == [python.key]


async def test_a_version_redeployed_with_its_own_deployment_leaves_the_gateway(tmp_path: Path) -> None:
    built = logistic_model(tmp_path)
    models = LocalModels(_settings(tmp_path), _policy())
    models.start()
    try:
        await _promoted(models, _served(built.spec))
        assert models.get(_served(built.spec)) is not None
        # The same version, now routed to a dedicated deployment (deployed with a quota).
        assert models.get(_served(built.spec, kind="dedicated")) is None
        assert models.stats().models == [] and models.evictions == 1
        for _ in range(3):
            assert models.get(_served(built.spec, kind="dedicated")) is None
        assert [r.reason for r in models.stats().refused] == ["a dedicated deployment"]
    finally:
        await models.close()


async def test_versions_under_comparison_are_all_served_by_the_pool(tmp_path: Path) -> None:
    """A canary split is measured arm against arm (latency too): while it lasts, neither version is
    answered in the gateway, and the version that wins is served here again once it takes all."""
    v1, v2 = (logistic_model(tmp_path, model="credit", version=v, seed=v) for v in (1, 2))
    routes = pool_routes(POOL_APP, v1.spec)
    route = routes.models[0]
    route.versions.append(route.versions[0].model_copy(update={"spec": v2.spec}))
    row = v1.rows(1)[0]
    async with running_gateway(routes, local_models_mb=64, home=tmp_path / "home") as gw:
        auth = gw.auth(Role.VIEWER, ["test"])
        models: LocalModels = gw.app.state.local_models

        async def answer(version: int) -> float:
            r = await gw.client.post(
                f"/v2/models/credit/versions/{version}/infer", json={"inputs": [row]}, headers=auth
            )
            assert r.status_code == 200, r.text
            return r.json()["predictions"][0]

        for _ in range(2):
            assert await answer(1) == 10.0  # the fake: version * 10 + row
        await _until_loaded(models, v1.spec.key)
        assert await answer(1) == v1.expected(1)[0]

        book = gw.app.state.routes
        arms = [RouteArm(version=1, weight=50), RouteArm(version=2, weight=50)]
        assert book.apply_table(RouteTable(model="credit", revision=2, arms=arms))
        for _ in range(3):
            assert await answer(1) == 10.0 and await answer(2) == 20.0
        assert models.stats().models[0].key == v1.spec.key and len(models.stats().models) == 1

        shadowed = [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0, mode="shadow")]
        assert book.apply_table(RouteTable(model="credit", revision=3, arms=shadowed))
        assert await answer(1) == 10.0

        winner = [RouteArm(version=2, weight=100)]
        assert book.apply_table(RouteTable(model="credit", revision=4, arms=winner))
        for _ in range(2):
            assert await answer(2) == 20.0
        await _until_loaded(models, v2.spec.key)
        assert await answer(2) == v2.expected(1)[0]
