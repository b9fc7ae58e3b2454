"""The monitor's access matrix: every route, against no token, another team, too low a role (as in
production: no anonymous reads)."""

from __future__ import annotations

from pathlib import Path

from fleet_core.auth import Role
from fleet_monitor.entities import AlertDraft
from security.matrix import PUBLIC, SERVICE_ROUTES, TEAM, Access, MatrixRun, admin, listing, team
from support.http import serving
from support.monitor import Population, feedback, inference, registered, running_monitor
from support.registry import running_registry

MODEL = f"{TEAM}-churn"


def table(alert_id: int) -> dict[tuple[str, str], Access]:
    m = f"/v1/models/{MODEL}"
    return {
        **SERVICE_ROUTES,
        # The dashboard's page and assets hold no data: everything it shows comes from /v1 with the
        # signed-in user's token.
        ("GET", "/"): PUBLIC,
        ("GET", "/static/{path}"): Access("public", path="/static/app.js"),
        ("GET", "/v1/overview"): listing(),
        ("GET", "/v1/alerts"): listing(),
        ("GET", "/v1/stream"): Access("listing", Role.VIEWER, endless=True),
        ("GET", "/v1/alerts/{alert_id}"): team(Role.VIEWER, f"/v1/alerts/{alert_id}"),
        ("GET", "/v1/models/{name}"): team(Role.VIEWER, m),
        ("GET", "/v1/models/{name}/config"): team(Role.VIEWER, f"{m}/config"),
        ("GET", "/v1/lake/{model}"): team(Role.VIEWER, f"/v1/lake/{MODEL}"),
        ("GET", "/v1/lake/{model}/labelled"): team(Role.VIEWER, f"/v1/lake/{MODEL}/labelled"),
        ("DELETE", "/v1/subjects/{subject:path}"): admin("/v1/subjects/user-42"),
        ("PUT", "/v1/models/{name}/config"): team(
            Role.DEPLOYER, f"{m}/config", lambda: {"json": {"drift_psi": 0.3}}
        ),
        # Forwarded to the registry with the caller's token once the monitor has checked the team;
        # the registry (which knows no such model here) answers 404.
        ("POST", "/v1/models/{name}/versions/{version}/reviews"): team(
            Role.SCIENTIST,
            f"{m}/versions/1/reviews",
            lambda: {"json": {"decision": "comment", "comment": "x"}},
        ),
    }


async def test_every_monitor_route_checks_role_and_team(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    async with (
        running_registry(tmp_path / "registry") as registry,
        serving(registry.app, lifespan="off") as registry_url,
        running_monitor(tmp_path, anonymous_read=False, registry_url=registry_url) as m,
    ):
        await m.engine.on_model_registered("e-1", registered(MODEL, team=TEAM))
        served = inference(MODEL, 1, Population(seed=3).rows(3), [0, 1, 0], request_id="req-1")
        m.engine.ingest([served])
        m.engine.ingest_feedback(feedback(MODEL, served.request_id, [0, 1, 1]))
        async with m.engine.store.transaction() as s:
            alert = await m.engine.store.open_alert(
                s,
                AlertDraft(
                    kind="anomaly", name="latency", model=MODEL, version=1, severity="warning", summary="x"
                ),
            )
        assert m.engine.lake is not None
        m.engine.lake.flush()
        run = MatrixRun(m.client, m.tokens, table(alert.id), markers=[MODEL])
        await run.run(m.app)
        assert not run.failures, "\n" + run.report()
