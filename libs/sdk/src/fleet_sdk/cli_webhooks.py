"""``fleet webhooks``: a team's events delivered to other systems over HTTP (the registry's
``/v1/webhooks``): add, list, remove, test, deliveries."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console

from fleet_sdk.cli_pool import print_table
from fleet_sdk.client import Client

webhooks_app = typer.Typer(
    help="Webhooks: a team's events (model.registered, rollout.updated, drift.detected, ...) posted "
    "to other systems, signed (Standard Webhooks).",
    no_args_is_help=True,
)
console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where events are posted (its host must be allowed)")],
    team: Annotated[str, typer.Option(help="Whose events")],
    event: Annotated[list[str], typer.Option(help="A topic name; repeatable (e.g. model.registered)")],
    description: Annotated[str | None, typer.Option(help="What the receiver is")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe URL to a team's events (deployer of the team). Prints the signing secret once."""
    with Client() as c:
        hook = c.add_webhook(team, url, event, description=description)
    if as_json:
        console.print_json(json.dumps(hook))
        return
    console.print(
        f"webhook {hook['id']}: {', '.join(hook['events'])} of team {hook['team']} -> {hook['url']}"
    )
    console.print(f"signing secret (shown only now; the receiver verifies with it): {hook['secret']}")


@webhooks_app.command("list")
def list_(
    team: Annotated[str | None, typer.Option(help="Only this team's")] = None, as_json: JsonOpt = False
) -> None:
    """Your teams' webhooks (never their secrets)."""
    with Client() as c:
        hooks = c.webhooks(team)
    if as_json:
        console.print_json(json.dumps(hooks))
        return
    print_table(
        console,
        "Webhooks",
        ["id", "team", "url", "events", "created by"],
        [[h["id"], h["team"], h["url"], ", ".join(h["events"]), h["created_by"]] for h in hooks],
    )


@webhooks_app.command("remove")
def remove(webhook_id: Annotated[str, typer.Argument(help="The webhook's id")]) -> None:
    """Remove a webhook and its delivery log (deployer of its team)."""
    with Client() as c:
        c.remove_webhook(webhook_id)
    console.print(f"removed webhook {webhook_id}")


@webhooks_app.command("test")
def test(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the outcome (0: do not wait)")] = 15.0,
) -> None:
    """Send a signed io.modelfleet.webhook.test.v1 event; exits 1 unless the receiver took it."""
    with Client() as c:
        queued = c.test_webhook(webhook_id)
        deadline = time.monotonic() + wait
        delivery = queued
        while wait and delivery["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.5)
            page = c.webhook_deliveries(webhook_id, limit=20)
            delivery = next((d for d in page["items"] if d["id"] == queued["id"]), delivery)
    state = delivery["state"]
    detail = delivery.get("last_error") or (
        f"HTTP {delivery['last_status']}" if delivery["last_status"] else ""
    )
    console.print(
        f"test event {delivery['event_id']}: {state} after {delivery['attempts']} attempt(s) {detail}"
    )
    if wait and state != "delivered":
        raise typer.Exit(1)


@webhooks_app.command("deliveries")
def deliveries(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id")],
    state: Annotated[str | None, typer.Option(help="pending, delivered or failed")] = None,
    limit: Annotated[int, typer.Option(help="Page size")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The webhook's delivery log, newest first: event, state, attempts, last answer."""
    with Client() as c:
        page = c.webhook_deliveries(webhook_id, state=state, limit=limit)
    if as_json:
        console.print_json(json.dumps(page))
        return
    print_table(
        console,
        f"Deliveries of {webhook_id} ({page['total']} in all)",
        ["event", "topic", "state", "attempts", "last status", "last error", "delivered"],
        [
            [
                d["event_id"],
                d["topic"],
                d["state"],
                d["attempts"],
                d["last_status"],
                d["last_error"],
                d["delivered_at"],
            ]
            for d in page["items"]
        ],
    )
