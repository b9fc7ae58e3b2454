"""The delivery gate from the command line: ``fleet versions checks|approve|reject|comment|compare``
and ``fleet models gate`` (the registry's ``.../checks``, ``.../reviews`` and ``/v1/models/{name}/gate``).

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
from fleet_sdk.errors import FleetAPIError, FleetUnavailable

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


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def compare(
    name: str,
    versions: Annotated[list[int], typer.Argument(help="Two or more versions; the first is the baseline")],
    as_json: JsonOpt = False,
) -> None:
    """Versions side by side: metrics, checks, data, hyperparameters that differ, profile shift,
    and live numbers from the monitor while they serve."""
    with Client() as c:
        shown = c.compare_versions(name, versions)
        try:
            live = {v["version"]: v for v in c.model_health(name)["versions"]}
        except (FleetAPIError, FleetUnavailable):
            live = {}  # the monitor has not seen the model (or is down): registry facts only
    shown["live"] = {
        str(n): {
            "weight": live[n].get("weight"),
            **live[n].get("live", {}),
            "performance": live[n].get("performance"),
        }
        for n in versions
        if n in live
    }
    if as_json:
        console.print_json(json.dumps(shown))
        return
    cols = [f"v{v['version']}" for v in shown["versions"]]
    rows: list[list[Any]] = [
        ["lineage"]
        + [
            f"{v['origin']}" + (f" of v{v['parent_version']}" if v["parent_version"] else "")
            for v in shown["versions"]
        ],
        ["estimator"] + [_value(v["estimator"]) for v in shown["versions"]],
        ["data"] + [f"{_value(v['dataset'])} ({_value(v['dataset_rows'])} rows)" for v in shown["versions"]],
        ["gate"] + [_value(v["gate"]) for v in shown["versions"]],
        ["checks"]
        + [", ".join(f"{k} {s}" for k, s in v["checks"].items()) or "-" for v in shown["versions"]],
    ]
    rows += [
        [f"metric {k}"] + [_value(by.get(str(v["version"]))) for v in shown["versions"]]
        for k, by in shown["metrics"].items()
    ]
    rows += [
        [f"param {k}"] + [_value(by.get(str(v["version"]))) for v in shown["versions"]]
        for k, by in shown["hyperparameters"].items()
    ]
    for key, label in (
        ("weight", "traffic %"),
        ("rps", "rps"),
        ("latency_p95_ms", "p95 ms"),
        ("error_rate", "errors"),
    ):
        if shown["live"]:
            rows.append(
                [label]
                + [_value(shown["live"].get(str(v["version"]), {}).get(key)) for v in shown["versions"]]
            )
    print_table(console, f"{name}: v{shown['baseline']} against {', '.join(cols[1:])}", ["", *cols], rows)
    if shown["datasets"]:
        print_table(
            console,
            "Training data against the baseline's",
            ["version", "rows", "columns added", "columns removed", "same data"],
            [
                [
                    f"v{d['version']}",
                    f"{d['rows']:+d}" if d["rows"] is not None else "-",
                    ", ".join(d["columns_added"]) or "-",
                    ", ".join(d["columns_removed"]) or "-",
                    "yes" if d["same_data"] else "no",
                ]
                for d in shown["datasets"]
            ],
        )
    if shown["profile_shift"]:
        print_table(
            console,
            "Training distributions against the baseline's",
            ["version", "feature", "mean shift (std)", "KS", "PSI"],
            [
                [
                    f"v{p['version']}",
                    p["feature"],
                    _value(p["mean_shift_std"]),
                    _value(p["ks_statistic"]),
                    _value(p["psi"]),
                ]
                for p in shown["profile_shift"]
            ],
        )
