"""The monitor on the real embedded broker: drift, concept drift, anomalies, rollout verdicts, the
lake and the dead-letter path, each driven by events as the gateway and deployer publish them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fleet_core.auth import Role
from fleet_core.events import Topic, make_event, parse_event
from support.kafka import read_topic, topic_size
from support.monitor import (
    Population,
    Publisher,
    feedback,
    inference,
    registered,
    route_update,
    running_monitor,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit"
ROWS_PER_EVENT = 10
WRONG_TYPE = (
    b'{"specversion": "1.0", "id": "x", "type": "wrong", "source": "s", '
    b'"time": "2026-01-01T00:00:00Z", "data": {}}'
)


async def _traffic(pub: Publisher, population: Population, events: int, **shift: object) -> None:
    payloads = []
    for _ in range(events):
        rows = population.rows(ROWS_PER_EVENT, **shift)  # type: ignore[arg-type]
        payloads.append(inference(MODEL, 1, rows, population.predictions(rows)))
    await pub.send(Topic.INFERENCE_LOGGED, payloads)


async def test_shifted_traffic_raises_drift_within_one_window_and_unshifted_raises_none(
    kafka, tmp_path: Path
) -> None:
    window_rows = 300
    async with (
        running_monitor(
            tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True, drift_window_rows=window_rows
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        await pub.send(Topic.MODEL_REGISTERED, [registered(MODEL)])
        await pub.send(Topic.ROLLOUT_UPDATED, [route_update(MODEL, [(1, 100)])])
        await monitor.wait_for(lambda: (MODEL, 1) in monitor.engine.versions, what="model.registered")

        population = Population(seed=7)
        windows = 20
        await _traffic(pub, population, windows * window_rows // ROWS_PER_EVENT)
        counters = monitor.engine.counters
        await monitor.wait_for(lambda: counters.drift_windows >= windows, what="20 unshifted windows")
        false_positive_rate = counters.drifted_windows / counters.drift_windows
        assert false_positive_rate <= 0.05, (
            f"{counters.drifted_windows} of {counters.drift_windows} windows drifted"
        )
        assert await monitor.published(Topic.DRIFT_DETECTED) == []

        await _traffic(
            pub, population, window_rows // ROWS_PER_EVENT, shift={"income": 1.0}, channel_p=(0.1, 0.2, 0.7)
        )
        await monitor.wait_for(lambda: counters.drift_windows >= windows + 1, what="the shifted window")

        async def data_drift() -> list[Any]:
            return [e for e in await monitor.published(Topic.DRIFT_DETECTED) if e.data.kind == "data"]

        # The window is counted before its episode's event is staged (its own transaction, a moment
        # later on PostgreSQL): wait for the outbox, then check there is exactly one.
        await monitor.wait_for(data_drift, what="the drift event in the outbox")
        events = await data_drift()
        assert len(events) == 1, "drift is raised by the first shifted window"
        drift = events[0].data
        assert set(drift.drifted_features) == {"income", "channel"}
        assert drift.sample_size == window_rows
        assert {(s.feature, s.test) for s in drift.scores if s.drifted} >= {
            ("income", "psi"),
            ("income", "ks"),
            ("channel", "chi2"),
        }

        # A second shifted window continues the episode: no second event.
        await _traffic(
            pub, population, window_rows // ROWS_PER_EVENT, shift={"income": 1.0}, channel_p=(0.1, 0.2, 0.7)
        )
        await monitor.wait_for(
            lambda: counters.drift_windows >= windows + 2, what="the second shifted window"
        )
        assert len([e for e in await monitor.published(Topic.DRIFT_DETECTED) if e.data.kind == "data"]) == 1

        # The event reaches the broker, and the alert is listed as firing.
        on_topic = await read_topic(kafka.bootstrap, Topic.DRIFT_DETECTED.value, expect=1, timeout_s=15)
        assert any(parse_event(Topic.DRIFT_DETECTED, r.value).data.kind == "data" for r in on_topic)
        alerts = (await monitor.client.get("/v1/alerts", params={"state": "firing", "model": MODEL})).json()
        # Income drives the model's decision, so its predictions drift too: a second, separate episode.
        assert sorted(a["name"] for a in alerts if a["kind"] == "drift") == ["data_drift", "prediction_drift"]
        detail = (await monitor.client.get(f"/v1/models/{MODEL}")).json()
        data_drift = next(d for d in detail["drift"] if d["kind"] == "data")
        assert data_drift["active"] and data_drift["drifted"]

        # Back to the training distribution: two clean windows end the episode and resolve the alert.
        await _traffic(pub, population, 2 * window_rows // ROWS_PER_EVENT)
        await monitor.wait_for(lambda: counters.drift_windows >= windows + 4, what="two clean windows")

        async def resolved_drift() -> list[str]:
            resolved = (
                await monitor.client.get("/v1/alerts", params={"state": "resolved", "model": MODEL})
            ).json()
            return sorted(a["name"] for a in resolved if a["kind"] == "drift")

        # Each episode's end is written in its own transaction, a moment after its window is
        # counted (as with the outbox above): wait for both, within the helper's bound.
        await monitor.wait_for(
            lambda: _equals(resolved_drift(), ["data_drift", "prediction_drift"]),
            what="both drift alerts resolved",
        )
        assert await resolved_drift() == ["data_drift", "prediction_drift"]


async def test_degraded_accuracy_in_feedback_raises_concept_drift(kafka, tmp_path: Path) -> None:
    async with (
        running_monitor(
            tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True, concept_window_rows=100
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        await pub.send(Topic.MODEL_REGISTERED, [registered(MODEL)])
        await monitor.wait_for(lambda: (MODEL, 1) in monitor.engine.versions, what="model.registered")
        population = Population(seed=11)

        async def serve_and_label(n: int, wrong_share: float) -> None:
            served, labels = [], []
            for i in range(n):
                rows = population.rows(1)
                event = inference(MODEL, 1, rows, population.predictions(rows))
                served.append(event)
                truth = population.label(rows[0])
                labels.append(
                    feedback(MODEL, event.request_id, [1 - truth if i < n * wrong_share else truth])
                )
            await pub.send(Topic.INFERENCE_LOGGED, served)
            await pub.send(Topic.INFERENCE_FEEDBACK, labels)

        await serve_and_label(100, wrong_share=0.02)
        await monitor.wait_for(
            lambda: (MODEL, 1) in monitor.engine.latest_performance, what="a labelled window"
        )
        assert monitor.engine.latest_performance[(MODEL, 1)]["accuracy"] >= 0.95
        assert await monitor.published(Topic.DRIFT_DETECTED) == []

        await serve_and_label(100, wrong_share=0.4)
        await monitor.wait_for(
            lambda: monitor.engine.latest_performance[(MODEL, 1)]["accuracy"] < 0.7,
            what="the degraded window",
        )
        # The window is scored in memory first; the event is committed to the outbox just after.
        await monitor.wait_for(
            lambda: monitor.published(Topic.DRIFT_DETECTED), what="drift.detected in the outbox"
        )
        events = await monitor.published(Topic.DRIFT_DETECTED)
        assert [e.data.kind for e in events] == ["concept"]
        accuracy = next(s for s in events[0].data.scores if s.feature == "accuracy")
        assert accuracy.drifted and accuracy.statistic == pytest.approx(0.6, abs=0.01)
        alerts = (await monitor.client.get("/v1/alerts", params={"state": "firing"})).json()
        assert [(a["name"], a["severity"]) for a in alerts] == [("concept_drift", "critical")]


async def test_a_latency_spike_raises_an_anomaly_that_resolves_afterwards(kafka, tmp_path: Path) -> None:
    async with (
        running_monitor(
            tmp_path,
            kafka_bootstrap=kafka.bootstrap,
            consume_events=True,
            bucket_s=0.5,
            anomaly_warmup_buckets=6,
            anomaly_fire_after=2,
            anomaly_resolve_after=2,
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        population = Population(seed=5)

        async def send_for(seconds: float, latency_ms: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await pub.send(
                    Topic.INFERENCE_LOGGED,
                    [
                        inference(MODEL, 1, population.rows(1), latency_ms=latency_ms + i % 3)
                        for i in range(10)
                    ],
                )
                await asyncio.sleep(0.05)

        await send_for(5.0, 8.0)
        assert await monitor.published(Topic.ANOMALY_DETECTED) == []
        await send_for(2.0, 250.0)
        await monitor.wait_for(
            lambda: monitor.engine.anomalies.is_firing(
                next(iter(monitor.engine.windows.series())), "latency"
            ),
            timeout_s=10,
            what="the latency anomaly to fire",
        )
        await send_for(3.0, 8.0)
        await monitor.wait_for(lambda: not monitor.engine.anomalies.firing(), timeout_s=10, what="resolution")
        events = [
            e.data for e in await monitor.published(Topic.ANOMALY_DETECTED) if e.data.metric == "latency"
        ]
        assert [e.state for e in events] == ["firing", "resolved"]
        assert events[0].value > 200 and events[0].baseline < 20
        alerts = (await monitor.client.get("/v1/alerts", params={"model": MODEL})).json()
        assert [(a["name"], a["state"]) for a in alerts if a["kind"] == "anomaly"] == [
            ("latency", "resolved")
        ]


async def test_a_failing_canary_gets_a_fail_verdict_and_an_alert(kafka, tmp_path: Path) -> None:
    async with (
        running_monitor(
            tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True, analysis_interval_s=0.5
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        await pub.send(Topic.MODEL_REGISTERED, [registered(MODEL, 1), registered(MODEL, 2)])
        canary = route_update(
            MODEL, [(1, 80), (2, 20)], revision=2, strategy="canary", phase="progressing", version=2, step=1
        )
        await pub.send(Topic.ROLLOUT_UPDATED, [canary])
        await monitor.wait_for(lambda: MODEL in monitor.engine.rollouts, what="the canary to be tracked")
        population = Population(seed=3)
        baseline = [inference(MODEL, 1, population.rows(1)) for _ in range(400)]
        candidate = [
            inference(MODEL, 2, population.rows(1), status="error" if i % 4 == 0 else "ok")
            for i in range(100)
        ]
        await pub.send(Topic.INFERENCE_LOGGED, baseline + candidate)

        async def failed() -> bool:
            return any(e.data.verdict == "fail" for e in await monitor.published(Topic.ROLLOUT_ANALYSIS))

        await monitor.wait_for(failed, what="a fail verdict")
        verdict = next(
            e.data for e in await monitor.published(Topic.ROLLOUT_ANALYSIS) if e.data.verdict == "fail"
        )
        assert (verdict.candidate_version, verdict.baseline_version, verdict.step) == (2, 1, 1)
        assert verdict.candidate.error_rate == pytest.approx(0.25) and verdict.baseline.error_rate == 0
        assert "error rate" in verdict.reason
        alerts = (
            await monitor.client.get("/v1/alerts", params={"state": "firing", "kind": "rollout"})
        ).json()
        assert len(alerts) == 1

        # The rollout ends (rolled back): the alert resolves and analysis stops.
        await pub.send(
            Topic.ROLLOUT_UPDATED,
            [route_update(MODEL, [(1, 100)], revision=3, strategy="canary", phase="rolled_back", version=2)],
        )
        await monitor.wait_for(lambda: MODEL not in monitor.engine.rollouts, what="the rollout to end")
        await monitor.wait_for(lambda: _no_firing(monitor, "rollout"), what="the rollout alert to resolve")


async def _no_firing(monitor, kind: str) -> bool:  # type: ignore[no-untyped-def]
    return (await monitor.client.get("/v1/alerts", params={"state": "firing", "kind": kind})).json() == []


async def test_malformed_events_on_every_topic_go_to_the_dlq_and_processing_goes_on(
    kafka, tmp_path: Path
) -> None:
    async with (
        running_monitor(tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        consumed = (
            Topic.INFERENCE_LOGGED,
            Topic.INFERENCE_FEEDBACK,
            Topic.MODEL_REGISTERED,
            Topic.ROLLOUT_UPDATED,
        )
        for topic in consumed:
            await pub.send_raw(topic.value, b"{not json")
            await pub.send_raw(topic.value, WRONG_TYPE)
        await pub.send(Topic.INFERENCE_LOGGED, [inference(MODEL, 1, Population().rows(1))])
        for topic in consumed:
            await monitor.wait_for(
                lambda t=topic: _dlq_size(kafka.bootstrap, t.dlq, 2),
                what=f"{topic.dlq} to hold both messages",
            )
        await monitor.wait_for(
            lambda: monitor.engine.counters.events == 1, what="the valid event to be processed"
        )
        metrics = (await monitor.client.get("/metrics")).text
        for topic in consumed:
            labels = f'consumer="monitor",reason="decode",topic="{topic.value}"'
            assert f"fleet_events_dead_lettered_total{{{labels}}} 2.0" in metrics


async def test_events_naming_a_path_instead_of_a_model_are_dead_lettered_never_written(
    kafka, tmp_path: Path
) -> None:
    escape = "../../../../../escaped"
    async with (
        running_monitor(
            tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True, lake_flush_interval_s=0.2
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        served = inference(MODEL, 1, Population().rows(2), [0, 1])
        for topic, payload in (
            (Topic.INFERENCE_LOGGED, served),
            (Topic.INFERENCE_FEEDBACK, feedback(MODEL, served.request_id, [0, 1])),
        ):
            for name in (escape, "a/b", "x\ud800"):
                raw = make_event(topic, payload, source="/test").model_dump(mode="json")
                raw["data"]["model"] = name
                await pub.send_raw(topic.value, json.dumps(raw).encode())
        await pub.send(Topic.INFERENCE_LOGGED, [served])
        for topic in (Topic.INFERENCE_LOGGED, Topic.INFERENCE_FEEDBACK):
            await monitor.wait_for(
                lambda t=topic: _dlq_size(kafka.bootstrap, t.dlq, 3), what=f"{topic.dlq} to hold the 3 events"
            )
        await monitor.wait_for(lambda: monitor.engine.counters.events == 1, what="the valid event")
        lake = monitor.engine.lake
        assert lake is not None
        await monitor.wait_for(lambda: lake.rows_written >= 2, what="the valid rows to reach the lake")
        dead = await read_topic(kafka.bootstrap, Topic.INFERENCE_LOGGED.dlq, expect=3)
        assert len(dead) == 3, "each bad event is dead-lettered once, not retried"
        assert {m for m, _ in lake.partitions("inference")} == {MODEL}
    assert not [p for p in tmp_path.parent.rglob("escaped")], "nothing was written outside the lake"


async def _dlq_size(bootstrap: str, topic: str, expected: int) -> bool:
    return await topic_size(bootstrap, topic) >= expected


async def test_traffic_and_labels_reach_the_lake_metrics_and_api(kafka, tmp_path: Path) -> None:
    async with (
        running_monitor(
            tmp_path, kafka_bootstrap=kafka.bootstrap, consume_events=True, lake_flush_interval_s=0.3
        ) as monitor,
        Publisher(kafka.bootstrap) as pub,
    ):
        await pub.send(Topic.MODEL_REGISTERED, [registered(MODEL)])
        await pub.send(Topic.ROLLOUT_UPDATED, [route_update(MODEL, [(1, 100)])])
        population = Population(seed=9)
        served = [
            inference(MODEL, 1, rows, population.predictions(rows))
            for rows in (population.rows(2) for _ in range(50))
        ]
        await pub.send(Topic.INFERENCE_LOGGED, served)
        await pub.send(Topic.INFERENCE_FEEDBACK, [feedback(MODEL, e.request_id, [1, 0]) for e in served[:20]])

        async def labelled() -> bool:
            r = await monitor.client.get(f"/v1/lake/{MODEL}/labelled")
            return r.status_code == 200 and len(r.json()) == 40

        await monitor.wait_for(labelled, what="40 labelled rows in the lake")
        rows = (await monitor.client.get(f"/v1/lake/{MODEL}/labelled")).json()
        assert {r["request_id"] for r in rows} == {e.request_id for e in served[:20]}
        summary = (await monitor.client.get(f"/v1/lake/{MODEL}")).json()
        assert len(summary["partitions"]["inference"]) == 1 and summary["rows_written"] >= 140

        metrics = (await monitor.client.get("/metrics")).text
        assert (
            'fleet_model_requests_total{arm="primary",model="credit",team="credit",version="1"} 50.0'
            in metrics
        )
        assert (
            'fleet_model_latency_ms{arm="primary",model="credit",quantile="0.95",team="credit",version="1"}'
            in metrics
        )

        overview = (await monitor.client.get("/v1/overview")).json()
        row = next(m for m in overview["models"] if m["name"] == MODEL)
        assert row["state"] == "serving" and row["arms"] == [
            {"version": 1, "weight": 100.0, "mode": "primary"}
        ]
        assert row["live"]["requests"] == 50

        # Thresholds: a token is needed to change them, and bad values are named.
        assert (
            await monitor.client.put(f"/v1/models/{MODEL}/config", json={"drift_psi": 0.3})
        ).status_code == 401
        bad = await monitor.client.put(
            f"/v1/models/{MODEL}/config", json={"drift_psi": -1}, headers=monitor.auth()
        )
        assert bad.status_code == 422 and "drift_psi" in bad.text
        ok = await monitor.client.put(
            f"/v1/models/{MODEL}/config",
            json={"drift_psi": 0.3},
            headers=monitor.auth(Role.DEPLOYER, ["credit"]),
        )
        assert ok.status_code == 200 and ok.json()["effective"]["drift"]["psi"] == 0.3
        assert (await monitor.client.get("/v1/models/nope")).status_code == 404


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected
