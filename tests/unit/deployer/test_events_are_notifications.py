"""Events are notifications, the registry is the truth: ``model.registered`` deploys only what the
registry confirms, and ``rollout.requested`` is authorised by the bearer token it carries in its
``fleetauth`` extension, like ``POST /v1/rollouts``, whatever its source claims to be."""

from __future__ import annotations

from typing import Any

import pytest

from fleet_core.auth import Role
from fleet_core.errors import Forbidden, Unauthorized
from fleet_core.events import CloudEvent, RolloutRequested, Topic, VersionChecked, make_event, parse_event
from fleet_core.schemas import ResourceQuota
from fleet_deployer.controller import EventRejected
from fleet_deployer.events import deployer_consumer
from support.deployer import DeployerHarness, FakeServingControl, registered
from support.registry_double import RegistryDouble


async def consume(d: DeployerHarness, topic: Topic, event: CloudEvent[Any]) -> None:
    """Hand one event to the deployer's own handler for ``topic``, as its consumer does (decoded
    from the bytes on the wire, so the envelope is what another system would send)."""
    consumer = deployer_consumer("127.0.0.1:1", d.controller, d.tokens)
    try:
        await consumer.handlers[topic]([parse_event(topic, event.to_bytes())])
    finally:
        await d.controller.idle()  # a recorded registration deploys in the background


async def arms(d: DeployerHarness) -> list[tuple[int, float]]:
    table = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()["table"]
    return [(a["version"], a["weight"]) for a in table["arms"]]


# ---------------------------------------------------------------- model.registered


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"deploy_policy": "direct"}, "deploy_policy"),
        ({"deploy_policy": "direct", "team": "ads"}, "team"),
        ({"deploy_policy": "direct", "sha256": "f" * 64}, "sha256"),
        ({"deploy_policy": "direct", "artifact_uri": "s3://elsewhere/evil.skops"}, "artifact_uri"),
        ({"deploy_policy": "direct", "quota": ResourceQuota(num_cpus=8)}, "quota"),
    ],
)
async def test_a_model_registered_event_that_contradicts_the_registry_deploys_nothing(
    deployer: DeployerHarness,
    registry: RegistryDouble,
    serving: FakeServingControl,
    claims: dict[str, Any],
    field: str,
) -> None:
    registry.add(registered("churn", 1))  # the registry: policy none, team fraud
    forged = make_event(Topic.MODEL_REGISTERED, registered("churn", 1, **claims), source="/registry")

    with pytest.raises(EventRejected, match=f"contradicts the registry on .*{field} \\(event"):
        await consume(deployer, Topic.MODEL_REGISTERED, forged)

    assert serving.calls == []
    assert await deployer.published() == []
    r = await deployer.client.get("/v1/routes/churn", headers=deployer.auth())
    assert r.status_code == 404, "nothing was recorded from the forged event"


async def test_a_model_registered_event_for_a_version_the_registry_lacks_deploys_nothing(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    ghost = make_event(Topic.MODEL_REGISTERED, registered("ghost", 1, deploy_policy="direct"), source="/x")
    with pytest.raises(EventRejected, match="the registry has no such version"):
        await consume(deployer, Topic.MODEL_REGISTERED, ghost)
    assert serving.calls == []


async def test_a_confirmed_model_registered_event_deploys_by_the_registrys_record(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    truth = registered("churn", 1, deploy_policy="direct", registered_by="alice")
    registry.add(truth)
    await consume(deployer, Topic.MODEL_REGISTERED, make_event(Topic.MODEL_REGISTERED, truth, source="/r"))
    assert await arms(deployer) == [(1, 100.0)]
    [update] = await deployer.published()
    assert update.data.phase == "promoted"
    listing = (await deployer.client.get("/v1/rollouts", headers=deployer.auth())).json()["items"]
    assert listing[0]["requested_by"] == "alice"


# ---------------------------------------------------------------- rollout.requested


def request_event(
    d: DeployerHarness, token: str | None, *, source: str = "/other-system", by: str = "ci-bot"
) -> CloudEvent[Any]:
    request = RolloutRequested(model="churn", version=2, strategy="direct", requested_by=by)
    return make_event(Topic.ROLLOUT_REQUESTED, request, source=source, auth=token)


def token(d: DeployerHarness, role: Role, teams: list[str], subject: str = "ci-bot") -> str:
    issued, _, _ = d.tokens.issue(subject, role, teams)
    return issued


@pytest.mark.parametrize("source", ["/other-system", "/fleet/registry", "/fleet/retrainer"])
async def test_rollout_requested_without_a_token_is_refused_whatever_its_source(
    deployer: DeployerHarness, source: str
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2)
    with pytest.raises(Unauthorized, match="fleetauth"):
        await consume(deployer, Topic.ROLLOUT_REQUESTED, request_event(deployer, None, source=source))
    assert await arms(deployer) == [(1, 100.0)]


@pytest.mark.parametrize(
    ("credential", "error", "words"),
    [
        ("not-a-jwt", Unauthorized, "invalid"),
        (lambda d: token(d, Role.VIEWER, ["fraud"]), Forbidden, "deployer"),
        (lambda d: token(d, Role.SCIENTIST, ["fraud"]), Forbidden, "deployer"),
        (lambda d: token(d, Role.DEPLOYER, ["ads"]), Forbidden, "fraud"),
        (lambda d: token(d, Role.DEPLOYER, []), Forbidden, "fraud"),
    ],
)
async def test_rollout_requested_with_a_bad_token_is_refused(
    deployer: DeployerHarness, credential: Any, error: type[Exception], words: str
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2)
    value = credential(deployer) if callable(credential) else credential
    with pytest.raises(error, match=words):
        await consume(deployer, Topic.ROLLOUT_REQUESTED, request_event(deployer, value))
    assert await arms(deployer) == [(1, 100.0)]


async def test_an_expired_token_is_refused(deployer: DeployerHarness) -> None:
    from datetime import timedelta

    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2)
    expired, _, _ = deployer.tokens.issue("ci-bot", Role.DEPLOYER, ["fraud"], ttl=timedelta(seconds=-5))
    with pytest.raises(Unauthorized, match="expired"):
        await consume(deployer, Topic.ROLLOUT_REQUESTED, request_event(deployer, expired))


async def test_rollout_requested_with_a_deployer_token_of_the_team_rolls_out_once(
    deployer: DeployerHarness,
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2)
    event = request_event(deployer, token(deployer, Role.DEPLOYER, ["fraud"], subject="service:retrainer"))
    await consume(deployer, Topic.ROLLOUT_REQUESTED, event)
    assert await arms(deployer) == [(2, 100.0)]
    [done] = [
        r
        for r in (await deployer.client.get("/v1/rollouts", headers=deployer.auth())).json()["items"]
        if r["version"] == 2
    ]
    assert done["requested_by"] == "ci-bot via service:retrainer"
    await consume(deployer, Topic.ROLLOUT_REQUESTED, event)  # a redelivery changes nothing
    assert len((await deployer.client.get("/v1/rollouts", headers=deployer.auth())).json()["items"]) == 2


async def test_the_token_is_never_echoed_in_the_rollout_or_its_announcement(
    deployer: DeployerHarness,
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2)
    secret = token(deployer, Role.DEPLOYER, ["fraud"])
    await consume(deployer, Topic.ROLLOUT_REQUESTED, request_event(deployer, secret, by="ci-bot"))
    rollouts = (await deployer.client.get("/v1/rollouts", headers=deployer.auth())).text
    announced = [e.to_bytes().decode() for e in await deployer.published()]
    assert secret not in rollouts and not any(secret in a for a in announced)


async def test_the_real_registrys_own_event_is_confirmed_and_deploys(
    deployer: DeployerHarness, tmp_path: Any
) -> None:
    """No false contradiction: the event the registry publishes matches what its API answers."""
    from sqlalchemy import select

    from fleet_deployer.registry_client import RegistryClient
    from fleet_registry.models import MESSAGING
    from support.registry import running_registry, upload_version

    (tmp_path / "registry").mkdir()
    async with running_registry(tmp_path / "registry") as registry:
        await registry.client.post(
            "/v1/models", json={"name": "churn", "team": "fraud"}, headers=registry.auth()
        )
        quota = {"num_cpus": 0.5, "min_replicas": 0, "max_replicas": 2}
        r = await upload_version(registry, "churn", registry.auth(), deploy_policy="direct", quota=quota)
        assert r.status_code == 201, r.text
        t = MESSAGING.outbox
        async with registry.app.state.db.sessions() as s:
            rows = (
                await s.execute(select(t.c.payload).where(t.c.topic == Topic.MODEL_REGISTERED.value))
            ).all()
        [event] = [parse_event(Topic.MODEL_REGISTERED, row.payload) for row in rows]
        deployer.controller.registry = RegistryClient(
            "http://registry", deployer.tokens, client=registry.client
        )
        await consume(deployer, Topic.MODEL_REGISTERED, event)
    assert await arms(deployer) == [(1, 100.0)]


async def test_a_short_registry_outage_delays_the_confirmation_instead_of_losing_it(
    deployer: DeployerHarness, registry: RegistryDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet_core.errors import Unavailable
    from fleet_deployer import controller as controller_module

    monkeypatch.setattr(controller_module, "REGISTRY_RETRY_S", (0.01, 0.01, 0.01))
    truth = registered("churn", 1, deploy_policy="direct")
    registry.add(truth)
    answer, failures = registry.version, [Unavailable("registry restarting")] * 2

    async def flaky(model: str, version: int) -> Any:
        if failures:
            raise failures.pop()
        return await answer(model, version)

    monkeypatch.setattr(registry, "version", flaky)
    await consume(deployer, Topic.MODEL_REGISTERED, make_event(Topic.MODEL_REGISTERED, truth, source="/r"))
    assert await arms(deployer) == [(1, 100.0)]

    failures.extend([Unavailable("registry down")] * 4)
    later = registered("churn", 2, deploy_policy="direct")
    registry.add(later)
    with pytest.raises(Unavailable):  # a longer outage: the consumer's retries, then the DLQ
        await consume(
            deployer, Topic.MODEL_REGISTERED, make_event(Topic.MODEL_REGISTERED, later, source="/r")
        )


# ---------------------------------------------------------------- version.checked


def _checked(version: int, state: str) -> CloudEvent[Any]:
    data = VersionChecked(model="churn", version=version, team="fraud", state=state, reason="r")  # type: ignore[arg-type]
    return make_event(Topic.VERSION_CHECKED, data, source="/fleet/registry")


async def test_a_gated_version_canaries_only_when_the_registry_says_it_is_ready(
    deployer: DeployerHarness, registry: RegistryDouble, serving: FakeServingControl
) -> None:
    for number, policy in ((1, "direct"), (2, "gated")):
        registry.add(registered("churn", number, deploy_policy=policy))
        await consume(
            deployer,
            Topic.MODEL_REGISTERED,
            make_event(
                Topic.MODEL_REGISTERED, registered("churn", number, deploy_policy=policy), source="/r"
            ),
        )
    assert await arms(deployer) == [(1, 100.0)], "a gated version takes no traffic on registration"

    registry.states[("churn", 2)] = "awaiting_approval"
    await consume(deployer, Topic.VERSION_CHECKED, _checked(2, "awaiting_approval"))
    # A forged or stale "ready": the registry still says it waits for its approval.
    await consume(deployer, Topic.VERSION_CHECKED, _checked(2, "ready"))
    assert await arms(deployer) == [(1, 100.0)]
    rollouts = (await deployer.client.get("/v1/rollouts?model=churn", headers=deployer.auth())).json()
    assert [r["version"] for r in rollouts["items"]] == [1]

    registry.states[("churn", 2)] = "ready"
    ready = _checked(2, "ready")
    await consume(deployer, Topic.VERSION_CHECKED, ready)
    await consume(deployer, Topic.VERSION_CHECKED, ready)  # redelivered: no second rollout
    await consume(deployer, Topic.VERSION_CHECKED, _checked(2, "ready"))  # announced again: none either
    rollouts = (await deployer.client.get("/v1/rollouts?model=churn", headers=deployer.auth())).json()
    canary = [r for r in rollouts["items"] if r["version"] == 2]
    assert len(canary) == 1 and canary[0]["strategy"] == "canary", rollouts
    assert canary[0]["requested_by"] == "delivery gate", canary[0]
    assert dict(await arms(deployer))[2] > 0, "the canary sends v2 its first step"
