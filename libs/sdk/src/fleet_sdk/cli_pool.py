"""``fleet deployments show fleet-pool``: the shared pool's replicas, their memory budget, what
each holds and what each loaded version costs (the deployer's ``GET /v1/pool``); ``fleet
deployments local``: the pool models a gateway process serves itself (its ``GET /v1/local-models``)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from fleet_sdk.client import Client

POOL_NAME = "fleet-pool"
"""The pool's application name, which ``fleet deployments show`` takes for the pool view."""


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MB"


def print_table(console: Console, title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left", header_style="bold cyan")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[str(x) if x is not None else "-" for x in r])
    console.print(table)


def show_pool(client: Client, console: Console, *, as_json: bool = False) -> None:
    """Print the pool view: a line of sizing, a table per replica, then the refused versions."""
    pool = client.pool()
    if as_json:
        console.print_json(json.dumps(pool, default=str))
        return
    console.print(
        f"[bold]{pool['app']}[/] shared pool: replicas {pool['min_replicas']}-{pool['max_replicas']}, "
        f"{pool['memory_mb'] or 'no'} MB reserved each, model budget {_mb(pool['model_budget_bytes'])} "
        f"(expected empty replica {pool['baseline_mb']} MB), at most {pool['max_models_per_replica']} "
        f"models; {pool['configured']} versions configured, {_mb(pool['loaded_bytes'])} loaded"
    )
    if not pool["connected"]:
        console.print("[yellow]serving control is disconnected: no replica reported[/]")
    for r in pool["replicas"]:
        budget = r.get("budget_bytes")
        used = f"{r['loaded_bytes'] / budget:.0%}" if budget else "-"
        console.print(
            f"replica [bold]{r['replica_id']}[/]: {_mb(r['loaded_bytes'])} of {_mb(budget)} ({used}) in "
            f"{r['models_loaded']} models; RSS {_mb(r.get('rss_bytes'))} "
            f"(empty {_mb(r.get('baseline_rss_bytes'))}, "
            f"reserved {_mb(r.get('memory_reserved_bytes'))}); evicted {r['evictions_by_bytes']} by bytes, "
            f"{r['evictions_by_count']} by count ({_mb(r['evicted_bytes'])})"
        )
        print_table(
            console,
            f"{r['replica_id']}: loaded, least recently used first",
            ["model", "team", "bytes", "last call s ago", "in flight"],
            [
                [m["key"], m.get("team"), _mb(m["bytes"]), m.get("last_call_s_ago"), m.get("in_flight")]
                for m in r["loaded"]
            ],
        )
        for refused in r.get("refused") or []:
            console.print(f"  refused at load: {refused['key']} measured {_mb(refused['bytes'])}")
    if pool["refused"]:
        print_table(
            console,
            "kept out of the pool: too large for a replica's budget (deploy with a quota)",
            ["model", "version", "team", "artifact", "expected loaded", "reason"],
            [
                [
                    x["model"],
                    x["version"],
                    x["team"],
                    _mb(x["size_bytes"]),
                    _mb(x["estimated_bytes"]),
                    x["reason"],
                ]
                for x in pool["refused"]
            ],
        )


def show_local(client: Client, console: Console, *, as_json: bool = False) -> None:
    """Print what the gateway that answered serves in its own process: a line of totals, the loaded
    models (most recently used first), then the ones it leaves to the pool and why."""
    local = client.local_models()
    if as_json:
        console.print_json(json.dumps(local, default=str))
        return
    if not local["enabled"]:
        console.print("this gateway serves no model itself (FLEET_LOCAL_MODELS_MB=0): every call goes to Ray")
        return
    console.print(
        f"gateway-local models: {_mb(local['loaded_bytes'])} of {_mb(local['budget_bytes'])} in "
        f"{len(local['models'])} models; calls here {local['local_calls']}, "
        f"through Ray {local['remote_calls']}; {local['loads']} loads, {local['evictions']} unloads"
    )
    print_table(
        console,
        "served in the gateway, most recently used first",
        ["model", "team", "flavor", "bytes", "calls", "mean ms", "idle s"],
        [
            [m["key"], m["team"], m["flavor"], _mb(m["bytes"]), m["calls"], m["mean_predict_ms"], m["idle_s"]]
            for m in local["models"]
        ],
    )
    if local["refused"]:
        print_table(
            console,
            "left to the pool",
            ["model", "team", "reason"],
            [[r["key"], r["team"], r["reason"]] for r in local["refused"]],
        )
