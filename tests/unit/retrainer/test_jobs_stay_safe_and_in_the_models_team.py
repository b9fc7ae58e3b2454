"""A job loads its champion as serving does (sha256 verified first, only the serving allow-list of
skops types trusted, whatever the registry recorded at upload), never reads or writes a dataset of
another team than the model's, and registers a winner that inherits the champion's team,
signature (PII flags, ranges), quota and tags; a dataset trigger trains on the dataset version it
announced."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from fleet_core.auth import Role
from fleet_core.events import DatasetUpdated, Topic, make_event
from fleet_core.schemas import Signature
from fleet_retrainer.events import retrainer_consumer
from fleet_retrainer.platform import SERVICE_SUBJECT
from fleet_retrainer.policy import RetrainPolicy
from support.retrainer import FEATURES, QUOTA, SIGNATURE, RetrainerHarness, population, rollouts_requested


async def run_job(h: RetrainerHarness, model: str) -> dict[str, Any]:
    r = await h.client.post("/v1/jobs", json={"model": model}, headers=h.auth(Role.SCIENTIST, ["alpha"]))
    assert r.status_code == 202, r.text
    assert r.json()["action"] == "start", r.json()
    return await h.finished(r.json()["job"]["id"])


async def test_a_winner_inherits_the_champions_team_signature_and_quota(retrainer: RetrainerHarness) -> None:
    retrainer.registry.add_champion("credit", "alpha")
    job = await run_job(retrainer, "credit")
    assert job["state"] == "registered", job
    [meta] = retrainer.registry.registered
    assert meta["team"] == "alpha"
    assert Signature.model_validate(meta["signature"]) == Signature.model_validate(SIGNATURE)
    income, age = meta["signature"]["inputs"]
    assert income["pii"] is True and (income["minimum"], income["maximum"]) == (0.0, 500.0)
    assert (age["minimum"], age["maximum"]) == (18.0, 99.0)
    assert meta["quota"] == QUOTA
    assert (meta["origin"], meta["parent_version"]) == ("retrain", 1)
    assert retrainer.registry.dataset_writes == [("credit-training", "upload")]


async def test_a_champion_whose_bytes_do_not_match_its_sha256_is_not_loaded(
    retrainer: RetrainerHarness,
) -> None:
    retrainer.registry.add_champion("credit", "alpha", sha256=hashlib.sha256(b"other bytes").hexdigest())
    job = await run_job(retrainer, "credit")
    assert job["state"] == "failed"
    assert "integrity" in job["reason"] and "sha256" in job["reason"], job["reason"]
    assert retrainer.registry.registered == [] and retrainer.registry.dataset_writes == []


async def test_a_champion_is_loaded_with_the_serving_allow_list_not_the_types_recorded_at_upload(
    retrainer: RetrainerHarness,
) -> None:
    base = population(300, shift=0, seed=1)
    fitted = LogisticRegression().fit(base[FEATURES], base["label"])
    fitted.on_load_ = os.system  # a type skops reports as untrusted, and serving never trusts
    blob = sio.dumps(fitted)
    recorded = sio.get_untrusted_types(data=blob)
    assert recorded, "the artifact must need a type beyond skops' defaults"
    retrainer.registry.add_champion("credit", "alpha", untrusted_types=recorded)
    retrainer.registry.artifacts[("credit", 1)] = blob
    retrainer.registry.versions[("credit", 1)] |= {
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
    }
    job = await run_job(retrainer, "credit")
    assert job["state"] == "failed"
    assert "not trusted for serving" in job["reason"] and recorded[0] in job["reason"], job["reason"]
    assert retrainer.registry.registered == []


async def test_a_job_never_reads_or_writes_another_teams_dataset(retrainer: RetrainerHarness) -> None:
    # Alpha's champion was registered on a dataset that belongs to team beta.
    retrainer.registry.add_champion("credit", "alpha", dataset="beta-events", dataset_team="beta")
    job = await run_job(retrainer, "credit")
    assert job["state"] == "failed"
    assert "belongs to team 'beta'" in job["reason"] and "'alpha'" in job["reason"], job["reason"]
    assert retrainer.registry.dataset_writes == [] and retrainer.registry.registered == []
    logs = (await retrainer.client.get(f"/v1/jobs/{job['id']}/logs", headers=retrainer.auth())).json()
    assert not any("training rows of beta-events" in line for line in logs["lines"]), logs


async def test_a_stored_recipe_outside_the_allow_list_fails_the_job_and_runs_nothing(
    retrainer: RetrainerHarness, tmp_path: RetrainerHarness
) -> None:
    marker = tmp_path / "owned"
    recipe = {
        "kind": "sklearn",
        "estimator": "subprocess.Popen",
        "params": {"args": ["touch", str(marker)]},
        "target": "label",
    }
    retrainer.registry.add_champion("credit", "alpha", recipe=recipe)
    job = await run_job(retrainer, "credit")
    assert job["state"] == "failed" and "recipe is refused" in job["reason"], job
    assert "estimator" in job["reason"]
    assert not marker.exists() and retrainer.registry.registered == []


async def test_hashed_pii_from_the_lake_is_never_trained_on_nor_copied_into_a_dataset(
    retrainer: RetrainerHarness,
) -> None:
    # The gateway logs a PII input only as "sha256:<hmac>": those rows cannot be trained on.
    retrainer.registry.add_champion("credit", "alpha")
    for i, row in enumerate(retrainer.registry.labelled["credit"]):
        row["inputs"] = json.dumps({**json.loads(row["inputs"]), "income": f"sha256:{i:064x}"})
    job = await run_job(retrainer, "credit")
    assert job["state"] == "failed", job
    assert "PII" in job["reason"] and "income" in job["reason"] and "200" in job["reason"], job["reason"]
    assert retrainer.registry.dataset_writes == [] and retrainer.registry.registered == []


async def _dataset_updated(h: RetrainerHarness, dataset: str, version: int, model: str) -> dict[str, Any]:
    """``dataset.updated`` for ``dataset`` v``version`` naming ``model``, through the retrainer's own
    consumer handler; the job it started, once finished."""
    content = h.registry.dataset_content[(dataset, version)]
    event = make_event(
        Topic.DATASET_UPDATED,
        DatasetUpdated(
            dataset=dataset,
            version=version,
            content_hash=hashlib.sha256(content).hexdigest(),
            row_count=len(pd.read_parquet(io.BytesIO(content))),
            models=[model],
        ),
        source="registry",
    )
    consumer = retrainer_consumer("127.0.0.1:1", h.controller)
    await consumer.handlers[Topic.DATASET_UPDATED]([event])
    (job,) = [j for j in await h.all_jobs() if j["trigger"] == "dataset"]
    return await h.finished(job["id"])


async def test_a_dataset_trigger_trains_on_the_new_dataset_version(retrainer: RetrainerHarness) -> None:
    retrainer.registry.add_champion("credit", "alpha")  # trained on credit-training v1 (300 rows)
    newer = population(450, shift=1, seed=7)
    assert retrainer.registry.add_dataset("credit-training", "alpha", newer)["version"] == 2
    job = await _dataset_updated(retrainer, "credit-training", 2, "credit")
    assert job["state"] == "registered", job
    assert (job["source_dataset"], job["source_dataset_version"]) == ("credit-training", 2)
    logs = (await retrainer.client.get(f"/v1/jobs/{job['id']}/logs", headers=retrainer.auth())).json()
    assert any("450 training rows of credit-training v2" in line for line in logs["lines"]), logs
    # What the winner was trained on: v2's 450 rows plus the traffic it did not hold out.
    (meta,) = retrainer.registry.registered
    written = retrainer.registry.dataset_content[("credit-training", meta["dataset_version"]["version"])]
    assert len(pd.read_parquet(io.BytesIO(written))) == job["result"]["train_rows"] > 450


async def test_a_dataset_version_without_the_models_columns_fails_the_job(
    retrainer: RetrainerHarness,
) -> None:
    retrainer.registry.add_champion("credit", "alpha")
    retrainer.registry.add_dataset(
        "credit-training", "alpha", population(100, shift=0, seed=3).drop(columns="age")
    )
    job = await _dataset_updated(retrainer, "credit-training", 2, "credit")
    assert job["state"] == "failed"
    assert "credit-training' v2 lacks the columns ['age']" in job["reason"], job["reason"]
    assert retrainer.registry.registered == []


async def test_a_winner_keeps_the_champions_tags_but_not_a_direct_deploy_policy(
    retrainer: RetrainerHarness,
) -> None:
    retrainer.registry.add_champion("credit", "alpha", tags=["credit", "tier-1"], deploy_policy="direct")
    job = await run_job(retrainer, "credit")
    assert job["state"] == "registered", job
    (meta,) = retrainer.registry.registered
    assert meta["tags"] == ["credit", "tier-1"]
    assert meta["deploy_policy"] == "none"  # the retrainer's canary is the only way it goes live


async def test_a_winner_of_a_gated_champion_is_gated_too_and_its_gate_starts_the_canary(
    retrainer: RetrainerHarness,
) -> None:
    retrainer.registry.add_champion("credit", "alpha", deploy_policy="gated")
    job = await run_job(retrainer, "credit")
    assert job["state"] == "registered", job
    (meta,) = retrainer.registry.registered
    assert meta["deploy_policy"] == "gated"  # the same delivery gate as a person's version
    assert await rollouts_requested(retrainer) == []  # the gate asks, once the version passes
    logs = (await retrainer.client.get(f"/v1/jobs/{job['id']}/logs", headers=retrainer.auth())).text
    assert "is gated: its delivery checks start its canary" in logs


async def test_the_retrainers_own_dataset_write_starts_no_job(retrainer: RetrainerHarness) -> None:
    """A winner's training data is a new version of the dataset, and the registry announces it on
    ``dataset.updated`` naming the model; taken as news, each job would start the next one."""
    retrainer.registry.add_champion("credit", "alpha")
    await retrainer.controller.put_policy("credit", RetrainPolicy(cooldown_s=0), by="alice")
    job = await run_job(retrainer, "credit")
    assert job["state"] == "registered", job
    written = job["result"]["dataset_version"]["version"]
    assert retrainer.registry.dataset_creators[("credit-training", written)] == SERVICE_SUBJECT
    consumer = retrainer_consumer("127.0.0.1:1", retrainer.controller)
    content = retrainer.registry.dataset_content[("credit-training", written)]
    event = make_event(
        Topic.DATASET_UPDATED,
        DatasetUpdated(
            dataset="credit-training",
            version=written,
            content_hash=hashlib.sha256(content).hexdigest(),
            row_count=1,
            models=["credit"],
        ),
        source="registry",
    )
    await consumer.handlers[Topic.DATASET_UPDATED]([event])
    assert [j["trigger"] for j in await retrainer.all_jobs()] == ["manual"]
    # A version the registry does not hold starts nothing either.
    decision, started = await retrainer.controller.on_trigger(
        "credit", "dataset", requested_by="dataset credit-training v99", dataset=("credit-training", 99)
    )
    assert started is None and decision.reason == "dataset 'credit-training' has no version 99"
