"""Versions side by side (``GET /v1/models/{name}/compare``, ``fleet versions compare``): what
differs between two versions a team weighs, down to how far their training data moved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_sdk.cli import app as cli
from fleet_sdk.client import Client
from support.http import serving
from support.registry import running_registry


def _data(n: int, shift: float, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"income": rng.normal(shift, 1, n), "age": rng.normal(40, 10, n)})
    return X, ((X["income"] - shift + rng.normal(0, 0.5, n)) > 0).astype(int).rename("label")


async def test_two_versions_compared_show_what_moved(tmp_path: Path) -> None:
    async with running_registry(tmp_path) as registry, serving(registry.app, lifespan="off") as url:
        token, _, _ = registry.tokens.issue("alice", Role.DEPLOYER, ["gx"])
        client = Client(registry_url=url, token=token, monitor_url="http://127.0.0.1:1")

        def register() -> None:
            client.create_model("gx-churn", team="gx")
            for C, (n, shift, seed) in ((1.0, (400, 0.0, 1)), (0.1, (600, 2.0, 2))):
                X, y = _data(n, shift, seed)
                client.register_sklearn(
                    "gx-churn",
                    LogisticRegression(C=C).fit(X, y),
                    X,
                    y,
                    team="gx",
                    dataset="gx-churn-train",
                    target_name="label",
                )

        await asyncio.to_thread(register)
        r = await registry.client.get(
            "/v1/models/gx-churn/compare", params=[("versions", 1), ("versions", 2)], headers=registry.auth()
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["baseline"] == 1 and [v["version"] for v in body["versions"]] == [1, 2]
        assert body["hyperparameters"]["C"] == {"1": 1.0, "2": 0.1}
        accuracy = body["metrics"]["train_accuracy"]
        assert accuracy == {str(v["version"]): v["metrics"]["train_accuracy"] for v in body["versions"]}
        assert [v["dataset"] for v in body["versions"]] == ["gx-churn-train@1", "gx-churn-train@2"]
        (change,) = body["datasets"]
        assert change == {
            "version": 2,
            "rows": 200,
            "columns_added": [],
            "columns_removed": [],
            "same_data": False,
        }
        shift = {s["feature"]: s for s in body["profile_shift"]}
        assert 1.5 < shift["income"]["mean_shift_std"] < 2.5 and shift["income"]["ks_statistic"] > 0.5
        assert abs(shift["age"]["mean_shift_std"]) < 0.3 and shift["age"]["ks_statistic"] < 0.2

        for params, status, field in (
            ([("versions", 1)], 422, None),
            ([("versions", 1), ("versions", 1)], 422, "versions"),
            ([("versions", 1), ("versions", 9)], 404, "version"),
        ):
            r = await registry.client.get(
                "/v1/models/gx-churn/compare", params=params, headers=registry.auth()
            )
            assert r.status_code == status, r.text
            if field:
                assert r.json()["field"] == field
        other = registry.auth(Role.VIEWER, ["ox"])
        r = await registry.client.get(
            "/v1/models/gx-churn/compare", params=[("versions", 1), ("versions", 2)], headers=other
        )
        assert r.status_code == 403

        def shown() -> str:
            env = {
                "FLEET_REGISTRY_URL": url,
                "FLEET_TOKEN": token,
                "FLEET_MONITOR_URL": "http://127.0.0.1:1",
                "FLEET_HOME": str(tmp_path),
                "COLUMNS": "200",
            }
            result = CliRunner().invoke(cli, ["versions", "compare", "gx-churn", "1", "2"], env=env)
            assert result.exit_code == 0, result.output
            return result.output

        output = await asyncio.to_thread(shown)
        assert "param C" in output and "income" in output and "+200" in output
