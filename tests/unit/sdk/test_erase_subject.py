"""``Client.erase_subject`` and ``fleet privacy erase``: a data subject's rows out of the monitor's
lake, over real HTTP, with the raw id percent-encoded whatever it holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet_core.auth import Role, TokenAuthority
from fleet_core.privacy import PiiHasher
from fleet_monitor.app import create_app
from fleet_monitor.lake import INFERENCE
from fleet_monitor.settings import MonitorSettings
from fleet_sdk.cli import app as cli
from fleet_sdk.client import Client
from fleet_sdk.config import DEFAULT_URLS, ClientConfig
from fleet_sdk.errors import FleetAPIError
from support import backend
from support.http import serving
from support.monitor import SECRET, feedback, inference

SALT = "a-production-like-salt-0123456789"
ANA, BOB = "users/ana?x#1", "user-bob"  # a raw id may hold '/', '?' and '#'


def _settings(tmp_path: Path) -> MonitorSettings:
    return MonitorSettings(
        home=tmp_path,
        **backend.lake_settings(),
        database_url=backend.database_url(tmp_path, "monitor"),
        kafka_bootstrap="127.0.0.1:1",
        jwt_secret=SECRET,
        consume_events=False,
        registry_url=None,
        tune_gc=False,
        pii_salt=SALT,
    )


async def test_the_client_and_the_cli_erase_a_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = PiiHasher(SALT)
    app = create_app(_settings(tmp_path))
    admin, _, _ = TokenAuthority(SECRET).issue("ana-admin", Role.ADMIN, ["*"], ttl=None)
    viewer, _, _ = TokenAuthority(SECRET).issue("vic", Role.VIEWER, ["*"], ttl=None)
    async with serving(app) as url:
        for user, request_id in ((ANA, "r-ana"), (BOB, "r-bob"), (ANA, "r-ana-2")):
            model = "fraud" if request_id == "r-ana-2" else "credit"
            app.state.engine.ingest(
                [inference(model, 1, [{"email": hasher.hash(user), "x": 1.0}], [0], request_id=request_id)]
            )
            app.state.engine.ingest_feedback(feedback(model, request_id, [1]))
        app.state.engine.lake.flush()
        urls = dict.fromkeys(DEFAULT_URLS, "http://127.0.0.1:1") | {"monitor_url": url}

        def as_viewer() -> None:
            with Client(url, viewer, config=ClientConfig(urls=urls)) as client:
                client.erase_subject(ANA)

        with pytest.raises(FleetAPIError) as refused:
            await asyncio.to_thread(as_viewer)
        assert refused.value.status == 403

        def as_admin() -> dict[str, object]:
            with Client(url, admin, config=ClientConfig(urls=urls)) as client:
                return client.erase_subject(ANA, model="credit")

        result = await asyncio.to_thread(as_admin)
        assert (result["subject"], result["inference_rows"], result["feedback_rows"]) == (
            hasher.hash(ANA),
            1,
            1,
        )
        assert app.state.engine.lake.read(INFERENCE, "credit").column("request_id").to_pylist() == ["r-bob"]
        assert app.state.engine.lake.read(INFERENCE, "fraud").num_rows == 1

        monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
        monkeypatch.setenv("FLEET_MONITOR_URL", url)
        monkeypatch.setenv("FLEET_TOKEN", admin)
        run = await asyncio.to_thread(CliRunner().invoke, cli, ["privacy", "erase", ANA, "--json"])
        assert run.exit_code == 0, run.output
        assert printed_json(run.stdout)["inference_rows"] == 1  # the other model's row
        assert app.state.engine.lake.read(INFERENCE, "fraud").num_rows == 0
        again = await asyncio.to_thread(CliRunner().invoke, cli, ["privacy", "erase", ANA])
        assert again.exit_code == 0, again.output
        assert "0 served rows, 0 labels, 0 partitions rewritten" in again.output


def printed_json(stdout: str) -> dict[str, object]:
    """The JSON document the CLI printed. The services run in this process and the runner swaps
    ``sys.stdout`` for the whole process, so a warning they log meanwhile can land before it."""
    start = stdout.index("{") if stdout.startswith("{") else stdout.index("\n{") + 1
    return json.loads(stdout[start:])  # type: ignore[no-any-return]
