"""The delivery gate from the command line: ``fleet versions checks|approve|reject|comment`` and
``fleet models gate`` (the registry's ``.../checks``, ``.../reviews`` and ``/v1/models/{name}/gate``).

``fleet versions checks NAME V --wait`` is what a CI job gates on: it exits 0 when the version is
``ready``, 3 while it waits for approvals, and 1 when a check failed or a reviewer rejected it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from fleet_sdk.cli_pool import print_table
from fleet_sdk.client import Client

console = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-m", help="Why (kept with the review)")]

EXIT_FAILED = 1
EXIT_AWAITING_APPROVAL = 3
STATE_STYLE = {
    "ready": "green",
    "awaiting_approval": "yellow",
    "checking": "cyan",
    "failed": "red",
    "rejected": "red",
}
STATUS_STYLE = {"passed": "green", "failed": "red", "skipped": "dim"}


def print_delivery(delivery: dict[str, Any]) -> None:
    state = delivery["state"]
    style = STATE_STYLE.get(state or "", "white")
    where = f"{delivery['model']} v{delivery['version']}"
    console.print(f"{where}: [{style}]{state or 'not gated'}[/] — {delivery['reason']}")
    if delivery["checks"]:
        print_table(
            console,
            "Checks",
            ["check", "status", "detail"],
            [
                [c["name"], f"[{STATUS_STYLE[c['status']]}]{c['status']}[/]", c["detail"]]
                for c in delivery["checks"]
            ],
        )
    if delivery["reviews"]:
        print_table(
            console,
            f"Reviews ({delivery['approvals']} of {delivery['approvals_required']} approvals)",
            ["when", "who", "review", "comment"],
            [[r["at"][:19], r["actor"], r["kind"], r["comment"] or ""] for r in delivery["reviews"]],
        )


def exit_code(state: str | None) -> int:
    """What a pipeline gates on: 0 ready (or not gated), 3 awaiting approval, 1 failed/rejected."""
    if state in ("failed", "rejected"):
        return EXIT_FAILED
    if state == "awaiting_approval":
        return EXIT_AWAITING_APPROVAL
    return 0


def checks(
    name: str,
    version: int,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the checks are in")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits")] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """A version's checks, reviews and delivery state; exits 1 if failed or rejected, 3 while it
    awaits approval (CI gates on this)."""
    with Client() as c:
        delivery = (
            c.wait_for_checks(name, version, timeout_s=timeout) if wait else c.version_checks(name, version)
        )
    if as_json:
        console.print_json(json.dumps(delivery))
    else:
        print_delivery(delivery)
    raise typer.Exit(exit_code(delivery["state"]))


def _review(name: str, version: int, decision: str, comment: str | None, as_json: bool) -> None:
    with Client() as c:
        delivery = c.review_version(name, version, decision, comment)
    if as_json:
        console.print_json(json.dumps(delivery))
    else:
        print_delivery(delivery)


def approve(name: str, version: int, comment: CommentOpt = None, as_json: JsonOpt = False) -> None:
    """Approve a gated version (the gate's approver role; not its registrant)."""
    _review(name, version, "approve", comment, as_json)


def reject(name: str, version: int, comment: CommentOpt = None, as_json: JsonOpt = False) -> None:
    """Reject a gated version: it never takes traffic."""
    _review(name, version, "reject", comment, as_json)


def comment(
    name: str,
    version: int,
    text: Annotated[str, typer.Argument(help="The comment")],
    as_json: JsonOpt = False,
) -> None:
    """Comment on a version (kept with its reviews)."""
    _review(name, version, "comment", text, as_json)


def gate(
    name: str,
    primary_metric: Annotated[str | None, typer.Option(help="e.g. f1, roc_auc, rmse")] = None,
    min_improvement: Annotated[float | None, typer.Option(help="Over the champion")] = None,
    holdout_dataset: Annotated[str | None, typer.Option(help="Dataset both are scored on")] = None,
    holdout_version: Annotated[int | None, typer.Option(help="Its version (default: newest)")] = None,
    target: Annotated[str | None, typer.Option(help="The holdout's label column")] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(help="p95 of one-row predictions")] = None,
    approvals: Annotated[int | None, typer.Option(help="Approvals needed before the canary")] = None,
    approver_role: Annotated[str | None, typer.Option(help="scientist, deployer or admin")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's delivery gate, or change the options given (deployer role)."""
    changes = {
        k: v
        for k, v in {
            "primary_metric": primary_metric,
            "min_improvement": min_improvement,
            "holdout_dataset": holdout_dataset,
            "holdout_version": holdout_version,
            "target": target,
            "latency_budget_ms": latency_budget_ms,
            "approvals": approvals,
            "approver_role": approver_role,
        }.items()
        if v is not None
    }
    with Client() as c:
        current = c.gate(name)
        shown = c.set_gate(name, **{**current, **changes}) if changes else current
    if as_json:
        console.print_json(json.dumps(shown))
        return
    print_table(
        console,
        f"Delivery gate of {name}",
        ["option", "value"],
        [[k, "-" if v is None else v] for k, v in shown.items()],
    )
