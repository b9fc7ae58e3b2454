"""A retrainer that dies while a job runs never re-runs it at start. If the job's winner had
reached the registry (the crash came between the registry's answer and the job's own record), the
job ends ``registered`` with that version and its canary is requested, as it would have been; a
job that registered nothing is failed with the reason."""

from __future__ import annotations

import asyncio
import threading

from fleet_core.auth import Role
from support.retrainer import RetrainerHarness, rollouts_requested


async def _job(h: RetrainerHarness, job_id: str) -> dict:
    return (await h.client.get(f"/v1/jobs/{job_id}", headers=h.auth())).json()


async def test_a_job_killed_after_its_version_registered_completes_at_restart(
    retrainer: RetrainerHarness,
) -> None:
    retrainer.registry.add_champion("credit", "alpha")
    stored, release = threading.Event(), threading.Event()

    def crash_window() -> None:  # the version is in the registry; the job has not heard back
        stored.set()
        release.wait(timeout=30)

    retrainer.registry.after_register = crash_window
    r = await retrainer.client.post(
        "/v1/jobs", json={"model": "credit"}, headers=retrainer.auth(Role.SCIENTIST, ["alpha"])
    )
    job_id = r.json()["job"]["id"]
    assert await asyncio.to_thread(stored.wait, 60), "the job never registered its winner"
    await retrainer.controller.stop()  # the process dies here
    release.set()
    job = await _job(retrainer, job_id)
    assert job["state"] == "running" and job["new_version"] is None
    assert await rollouts_requested(retrainer) == []

    assert await retrainer.controller.recover() == 1
    job = await _job(retrainer, job_id)
    assert job["state"] == "registered" and job["new_version"] == 2, job
    assert job["result"]["candidate_metrics"]["accuracy"] > job["result"]["champion_metrics"]["accuracy"]
    assert job["result"]["dataset_version"]["dataset"] == "credit-training"
    assert await rollouts_requested(retrainer) == [("credit", 2)]
    assert len(retrainer.registry.registered) == 1  # nothing registered twice
    logs = (await retrainer.client.get(f"/v1/jobs/{job_id}/logs", headers=retrainer.auth())).json()["lines"]
    assert any("after v2 was registered: the job completes" in line for line in logs), logs


async def test_a_job_killed_before_registering_is_failed_at_restart(retrainer: RetrainerHarness) -> None:
    retrainer.registry.add_champion("credit", "alpha")
    store = retrainer.controller.store
    async with store.transaction() as s:
        job = await store.add_job(
            s,
            model="credit",
            team="alpha",
            trigger="manual",
            trigger_event_id=None,
            requested_by="alice",
            champion_version=1,
            state="running",
            reason="manual trigger",
        )
    assert await retrainer.controller.recover() == 1
    after = await _job(retrainer, job.id)
    assert after["state"] == "failed" and after["reason"] == "the retrainer restarted while the job ran"
    assert await rollouts_requested(retrainer) == [] and retrainer.registry.registered == []
