"""The deployer's store on PostgreSQL: deploy, split, rollback, activity upserts, restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.deployer import FakeServingControl, running_deployer
from support.registry_double import confirming


async def test_routes_rollouts_and_activity_survive_a_restart_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    serving = FakeServingControl()
    async with running_deployer(tmp_path, serving=serving, database_url=postgres_url) as d:
        confirming(d)
        await d.register("churn", 1, deploy_policy="direct")
        await d.register("churn", 2, deploy_policy="direct", quota={"num_cpus": 1})
        split = {
            "arms": [
                {"version": 1, "weight": 50, "sticky": True},
                {"version": 2, "weight": 50, "sticky": True},
            ]
        }
        assert (await d.client.put("/v1/routes/churn", json=split, headers=d.auth())).status_code == 200
        earlier, later = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC)
        await d.controller.on_inference_logged("churn", 1, later)
        await d.controller.flush_activity()
        await d.controller.on_inference_logged("churn", 1, earlier)  # never moves backwards
        await d.controller.flush_activity()

    async with running_deployer(tmp_path, serving=serving, database_url=postgres_url) as d:
        route = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()
        assert route["table"]["revision"] == 3
        page = (await d.client.get("/v1/deployments", headers=d.auth())).json()
        listed = {x["version"]: x for x in page["items"]}
        assert datetime.fromisoformat(listed[1]["last_request_at"]) == later
        assert listed[1]["idle"] is False and listed[1]["traffic_weight"] == 50.0
        rollback = await d.client.post("/v1/models/churn/rollback", headers=d.auth())
        assert rollback.json()["version"] == 2
