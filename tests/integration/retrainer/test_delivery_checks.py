"""The delivery gate's checks, run by the retrainer against a real registry and a real deployer
over HTTP: what serves is the champion, both are loaded as replicas load them, scored on the
gate's holdout dataset; the outcome and its reason land on the version in the registry."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from fleet_core.auth import Role, TokenAuthority
from fleet_retrainer.checks import VersionChecker
from fleet_retrainer.platform import Fleet
from fleet_retrainer.settings import RetrainerSettings
from fleet_sdk.client import Client
from support.deployer import FakeServingControl, running_deployer
from support.http import serving
from support.registry import SECRET, running_registry

MODEL = "gx-churn"


@dataclass
class Platform:
    registry_url: str
    deployer_url: str
    tokens: TokenAuthority
    checker: VersionChecker

    def client(self, subject: str = "alice", role: Role = Role.DEPLOYER) -> Client:
        token, _, _ = self.tokens.issue(subject, role, ["gx"])
        return Client(registry_url=self.registry_url, deployer_url=self.deployer_url, token=token)


@asynccontextmanager
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    (tmp_path / "registry").mkdir()
    (tmp_path / "deployer").mkdir()
    async with (
        running_registry(tmp_path / "registry") as registry,
        serving(registry.app, lifespan="off") as registry_url,
        running_deployer(tmp_path / "deployer", serving=FakeServingControl(), registry_url=registry_url) as d,
        serving(d.app, lifespan="off") as deployer_url,
    ):
        tokens = TokenAuthority(SECRET)
        settings = RetrainerSettings(home=tmp_path, jwt_secret=SECRET)
        fleet = Fleet(registry_url, "http://127.0.0.1:1", tokens, deployer_url=deployer_url)
        yield Platform(registry_url, deployer_url, tokens, VersionChecker(fleet, settings))


def population(n: int, seed: int, *, noise: float) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"tenure": rng.normal(size=n), "spend": rng.normal(size=n)})
    y = ((X["tenure"] + 0.5 * X["spend"] + rng.normal(scale=noise, size=n)) > 0).astype(int)
    return X, y.rename("churned")


def register(client: Client, estimator: Any, X: pd.DataFrame, y: pd.Series, **options: Any) -> int:
    return int(
        client.register_sklearn(MODEL, estimator, X, y, team="gx", target_name="churned", **options)[
            "version"
        ]
    )


async def test_a_worse_version_fails_its_evaluation_and_a_better_one_waits_for_approval(
    tmp_path: Path,
) -> None:
    async with platform(tmp_path) as p:
        alice = p.client()
        X, y = population(600, 1, noise=0.3)
        holdout = pd.concat(population(400, 2, noise=0.3), axis=1)

        def setup() -> int:
            alice.create_model(MODEL, team="gx")
            alice.create_dataset("gx-holdout", team="gx")
            buffer = io.BytesIO()
            holdout.to_parquet(buffer)
            alice.upload_dataset_version("gx-holdout", buffer.getvalue(), row_count=len(holdout))
            alice.set_gate(MODEL, holdout_dataset="gx-holdout", approvals=1, latency_budget_ms=500)
            # v1 is fitted on a feature alone: it serves, and it is what a new version must beat.
            weak = LogisticRegression().fit(X[["tenure"]].assign(spend=0.0), y)
            v1 = register(alice, weak, X, y)
            alice.deploy(MODEL, v1, wait_s=0)
            return v1

        await asyncio.to_thread(setup)

        # v2 learnt inverted labels: worse than v1 on the same holdout.
        worse = await asyncio.to_thread(
            register, alice, LogisticRegression().fit(X, 1 - y), X, y, deploy_policy="gated"
        )
        delivery = await p.checker.check(MODEL, worse)
        assert delivery is not None
        assert delivery["state"] == "failed", delivery
        checks = {c["name"]: c for c in delivery["checks"]}
        assert checks["signature"]["status"] == "passed" and "v1" in checks["signature"]["detail"]
        assert checks["smoke"]["status"] == "passed"
        assert checks["evaluation"]["status"] == "failed"
        assert checks["evaluation"]["detail"].startswith("worse: accuracy")
        assert "on 400 rows of dataset gx-holdout v1" in checks["evaluation"]["detail"]
        assert checks["latency"]["status"] == "passed" and checks["latency"]["measured"]["p95_ms"] > 0
        assert "evaluation" in delivery["reason"]
        assert await p.checker.check(MODEL, worse) is None, "checked once: a redelivery checks nothing"

        better = await asyncio.to_thread(
            register, alice, LogisticRegression().fit(X, y), X, y, deploy_policy="gated"
        )
        delivery = await p.checker.check(MODEL, better)
        assert delivery is not None
        assert delivery["state"] == "awaiting_approval", delivery
        evaluation = next(c for c in delivery["checks"] if c["name"] == "evaluation")
        assert evaluation["detail"].startswith("better: accuracy")
        assert evaluation["measured"]["candidate"] > evaluation["measured"]["champion"]

        bob = p.client("bob")
        approved = await asyncio.to_thread(bob.review_version, MODEL, better, "approve", "looks right")
        assert approved["state"] == "ready" and approved["approvals"] == 1


async def test_a_version_that_drops_an_input_fails_the_signature_check_unless_declared(
    tmp_path: Path,
) -> None:
    async with platform(tmp_path) as p:
        alice = p.client()
        X, y = population(300, 3, noise=0.3)

        def setup() -> tuple[int, int, int]:
            alice.create_model(MODEL, team="gx")
            v1 = register(alice, LogisticRegression().fit(X, y), X, y)
            alice.deploy(MODEL, v1, wait_s=0)
            narrow = X[["tenure"]]
            model = LogisticRegression().fit(narrow, y)
            v2 = register(alice, model, narrow, y, deploy_policy="gated")
            v3 = register(alice, model, narrow, y, deploy_policy="gated", tags=["breaking-change"])
            return v1, v2, v3

        _, v2, v3 = await asyncio.to_thread(setup)
        delivery = await p.checker.check(MODEL, v2)
        assert delivery is not None and delivery["state"] == "failed"
        signature = next(c for c in delivery["checks"] if c["name"] == "signature")
        assert signature["status"] == "failed"
        assert "input 'spend' is gone" in signature["detail"] and "breaking-change" in signature["detail"]
        delivery = await p.checker.check(MODEL, v3)
        assert delivery is not None
        signature = next(c for c in delivery["checks"] if c["name"] == "signature")
        assert signature["status"] == "passed" and "declared a breaking change" in signature["detail"]
        # No holdout dataset in the gate and the monitor is down: the evaluation fails, saying so.
        evaluation = next(c for c in delivery["checks"] if c["name"] == "evaluation")
        assert evaluation["status"] == "failed"
        assert evaluation["detail"].startswith("cannot read the newest labelled traffic from the monitor")
