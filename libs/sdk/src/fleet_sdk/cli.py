"""The ``fleet`` command line: the embedded stack, models, versions, datasets, deployments, routes,
monitoring and alerts, audit and tokens, webhooks."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet_sdk import cli_delivery
from fleet_sdk.cli_lists import AllOpt, LimitOpt, OffsetOpt, fetch, more, title
from fleet_sdk.cli_pool import POOL_NAME, show_local, show_pool
from fleet_sdk.cli_register import register as register_command
from fleet_sdk.cli_top import top
from fleet_sdk.cli_webhooks import webhooks_app
from fleet_sdk.client import Client
from fleet_sdk.config import fleet_home
from fleet_sdk.errors import FleetAPIError, FleetUnavailable
from fleet_sdk.stack import DEFAULT_BROKER_PORT, DEFAULT_GRPC_PORT, Stack, StackError

app = typer.Typer(
    help="ModelFleet: run, inspect and manage the fleet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Models: list, show, create, archive.", no_args_is_help=True)
versions_app = typer.Typer(
    help="Model versions: list, show, aliases, lineage; delivery checks and reviews.", no_args_is_help=True
)
datasets_app = typer.Typer(help="Datasets and their versions.", no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens (admins).", no_args_is_help=True)
deployments_app = typer.Typer(
    help="What is deployed: replicas, quota, traffic, idle state.", no_args_is_help=True
)
routes_app = typer.Typer(
    help="Route tables: which version gets which share of traffic.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(versions_app, name="versions")
app.add_typer(datasets_app, name="datasets")
app.add_typer(tokens_app, name="tokens")
app.add_typer(deployments_app, name="deployments")
app.add_typer(routes_app, name="routes")
jobs_app = typer.Typer(help="Retraining jobs: list, show, logs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
rollout_app = typer.Typer(
    help="Rollouts: canary, A/B, shadow, blue-green; pause, resume, promote, abort.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")
monitor_app = typer.Typer(
    help="Live health of the fleet: traffic, latency, drift, thresholds.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")
privacy_app = typer.Typer(help="Privacy: erase a data subject (admins).", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
app.add_typer(webhooks_app, name="webhooks")
app.command("top")(top)
app.command("register")(register_command)
versions_app.command("checks")(cli_delivery.checks)
versions_app.command("approve")(cli_delivery.approve)
versions_app.command("reject")(cli_delivery.reject)
versions_app.command("comment")(cli_delivery.comment)
versions_app.command("compare")(cli_delivery.compare)
models_app.command("gate")(cli_delivery.gate)

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _client() -> Client:
    return Client()


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _metrics(metrics: dict[str, float], limit: int = 4) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:limit]) or "-"


def _dump(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left", header_style="bold cyan")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[str(x) if x is not None else "-" for x in r])
    console.print(table)


# ---------------------------------------------------------------------- stack


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once healthy; `fleet down` stops")
    ] = False,
    broker_port: Annotated[int, typer.Option(help="Broker port (0 = any free port)")] = DEFAULT_BROKER_PORT,
    registry_port: Annotated[int, typer.Option(help="Registry port (0 = any free port)")] = 8001,
    deployer_port: Annotated[int, typer.Option(help="Deployer port (0 = any free port)")] = 8002,
    gateway_port: Annotated[int, typer.Option(help="Gateway port (0 = any free port)")] = 8000,
    gateway_grpc_port: Annotated[
        int, typer.Option(help="Gateway's gRPC (Open Inference Protocol) port (0 = any free port)")
    ] = DEFAULT_GRPC_PORT,
    monitor_port: Annotated[int, typer.Option(help="Monitor and dashboard port (0 = any free port)")] = 8003,
    retrainer_port: Annotated[int, typer.Option(help="Retrainer port (0 = any free port)")] = 8004,
) -> None:
    """Start the embedded stack: broker, Ray and every service, as processes on this box."""
    stack = Stack()
    try:
        state = stack.start(
            broker_port=broker_port,
            ports={
                "registry": registry_port,
                "deployer": deployer_port,
                "gateway": gateway_port,
                "monitor": monitor_port,
                "retrainer": retrainer_port,
            },
            grpc_port=gateway_grpc_port,
            detach=detach,
            log=lambda m: err.print(f"[dim]{m}[/]"),
        )
    except StackError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    _print_urls(stack)
    if detach:
        console.print("Stack running in the background. [bold]fleet status[/] · [bold]fleet down[/]")
        return
    console.print("Press [bold]Ctrl-C[/] to stop.")
    _wait_then_stop(stack, [c.pid for c in state.components])


def _print_urls(stack: Stack) -> None:
    state = stack.state()
    assert state is not None
    rows = [
        [c.name, c.url, f"{c.url}/docs" if c.url.startswith("http") else "-", c.log] for c in state.components
    ]
    _table("ModelFleet embedded stack", ["component", "url", "api docs", "log"], rows)
    console.print(f"CLI config with the admin token: {stack.home / 'config'}")
    for comp in state.components:
        if comp.grpc_url:
            console.print(f"{comp.name} gRPC (Open Inference Protocol): [bold]{comp.grpc_url}[/]")
    monitor = next((c for c in state.components if c.name == "monitor"), None)
    if monitor is not None:
        console.print(f"Ops dashboard: [bold]{monitor.url}/[/]")


def _wait_then_stop(stack: Stack, pids: list[int]) -> None:
    from fleet_sdk.stack import pid_alive

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        dead = [p for p in pids if not pid_alive(p)]
        if dead:
            err.print(
                f"[red]a component exited (pid {dead}); stopping the stack. See logs in {stack.logs}[/]"
            )
            break
    err.print("stopping…")
    stopped = stack.stop()
    err.print(f"stopped: {', '.join(stopped) or 'nothing'}")


@app.command()
def restart(
    service: Annotated[str, typer.Argument(help="registry, deployer, gateway, monitor or retrainer")],
) -> None:
    """Restart one service of a running stack on the same port; it resumes from its database."""
    try:
        comp = Stack().restart_service(service)
    except StackError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{comp.name} restarted (pid {comp.pid}) at {comp.url}")


@app.command()
def down() -> None:
    """Stop a stack started with `fleet up --detach`."""
    stopped = Stack().stop()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no stack is running")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Health of each component of the embedded stack."""
    rows = Stack().status()
    if as_json:
        _dump(rows)
        return
    if not rows:
        console.print(f"no stack is running from {fleet_home()} (`fleet up`)")
        raise typer.Exit(1)
    style = {"healthy": "green", "running": "yellow", "stopped": "red"}
    _table(
        "ModelFleet stack",
        ["component", "state", "pid", "url", "detail"],
        [[r["name"], f"[{style[r['state']]}]{r['state']}[/]", r["pid"], r["url"], r["detail"]] for r in rows],
    )
    if any(r["state"] != "healthy" for r in rows):
        raise typer.Exit(1)


# ---------------------------------------------------------------------- models


@models_app.command("list")
def models_list(
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    tag: Annotated[str | None, typer.Option(help="Only models with this tag")] = None,
    name: Annotated[str | None, typer.Option(help="Name contains")] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Include archived models")] = False,
    sort: Annotated[str, typer.Option(help="name, updated or created; -desc, e.g. -updated")] = "name",
    limit: LimitOpt = 50,
    offset: OffsetOpt = 0,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List models, a page at a time (--all for every one)."""
    with _client() as c:
        models, total = fetch(
            lambda size, at: c.models_page(
                team=team, tag=tag, name=name, include_archived=archived, sort=sort, limit=size, offset=at
            ),
            limit=limit,
            offset=offset,
            everything=all_,
        )
    if as_json:
        _dump(models)
        return
    rows = [
        [
            m["name"],
            m["team"],
            m["latest_version"],
            ", ".join(f"{a}→v{v}" for a, v in m["aliases"].items()) or "-",
            ", ".join(m["tags"]) or "-",
            "archived" if m["archived"] else "active",
            _when(m["updated_at"]),
        ]
        for m in models
    ]
    columns = ["name", "team", "latest", "aliases", "tags", "state", "updated"]
    _table(title("Models", len(models), total, offset), columns, rows)
    more(len(models), total, offset)


@models_app.command("show")
def models_show(name: str, as_json: JsonOpt = False) -> None:
    """A model and its versions."""
    with _client() as c:
        model = c.get_model(name)
        versions = c.list_versions(name)
    if as_json:
        _dump({**model, "versions": versions})
        return
    console.print(
        f"[bold]{model['name']}[/]  team [cyan]{model['team']}[/]  "
        f"{'[red]archived[/]' if model['archived'] else '[green]active[/]'}"
    )
    if model["description"]:
        console.print(model["description"])
    _versions_table(name, versions)


def _versions_table(name: str, versions: list[dict[str, Any]]) -> None:
    rows = [
        [
            f"v{v['version']}",
            f"{v['flavor']} {v['task']}",
            _metrics(v["metrics"], 3),
            f"{v['dataset_version']['dataset']} v{v['dataset_version']['version']}"
            if v["dataset_version"]
            else "-",
            v["origin"] + (f" ← v{v['parent_version']}" if v["parent_version"] else ""),
            ", ".join(v["aliases"]) or "-",
            v["sha256"][:10],
        ]
        for v in versions
    ]
    _table(f"Versions of {name}", ["ver", "kind", "metrics", "dataset", "origin", "aliases", "sha256"], rows)


@models_app.command("create")
def models_create(
    name: str,
    team: Annotated[str, typer.Option(help="Owning team")],
    description: str | None = None,
    tag: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """Create an empty model (versions are registered from the SDK or the API)."""
    with _client() as c:
        model = c.create_model(name, team, description=description, tags=tag or [])
    console.print(f"created model [bold]{model['name']}[/] in team {model['team']}")


@models_app.command("archive")
def models_archive(name: str) -> None:
    """Archive a model: hidden from listings, no new versions; nothing is deleted."""
    with _client() as c:
        c.archive_model(name)
    console.print(f"archived {name}")


# ---------------------------------------------------------------------- versions


@versions_app.command("list")
def versions_list(name: str, as_json: JsonOpt = False) -> None:
    """List a model's versions, newest first."""
    with _client() as c:
        versions = c.list_versions(name)
    if as_json:
        _dump(versions)
        return
    _versions_table(name, versions)


@versions_app.command("show")
def versions_show(
    name: str, version: Annotated[str, typer.Argument(help="Number or alias")], as_json: JsonOpt = False
) -> None:
    """A version: artifact, signature, metrics, recipe, dataset, profile summary."""
    with _client() as c:
        v = c.get_version(name, version)
    if as_json:
        _dump(v)
        return
    console.print(
        f"[bold]{v['model']}[/] v{v['version']}  {v['flavor']} {v['task']}  "
        f"aliases: {', '.join(v['aliases']) or '-'}  deploy policy: {v['deploy_policy']}"
    )
    console.print(f"artifact {v['artifact_uri']}\nsha256   {v['sha256']}  ({v['size_bytes']:,} bytes)")
    if v["metrics"]:
        _table("Metrics", ["metric", "value"], [[k, f"{val:.4g}"] for k, val in v["metrics"].items()])
    sig_rows = [
        [
            f["name"],
            f["type"],
            f.get("minimum"),
            f.get("maximum"),
            ", ".join(map(str, f.get("categories") or [])) or "-",
            "yes" if f.get("pii") else "",
        ]
        for f in v["signature"]["inputs"]
    ]
    _table("Signature (inputs)", ["field", "type", "min", "max", "categories", "pii"], sig_rows)
    profile = v.get("reference_profile")
    if profile:
        prow = []
        for fname, fp in profile["features"].items():
            if fp["kind"] == "numeric":
                prow.append(
                    [
                        fname,
                        "numeric",
                        f"{fp['mean']:.3g}",
                        f"{fp['std']:.3g}",
                        f"{fp['minimum']:.3g} … {fp['maximum']:.3g}",
                    ]
                )
            else:
                prow.append([fname, "categorical", "-", "-", f"{len(fp['frequencies'])} categories"])
        _table(
            f"Reference profile ({profile['row_count']} rows)",
            ["feature", "kind", "mean", "std", "range"],
            prow,
        )
    if v.get("recipe"):
        r = v["recipe"]
        console.print(
            f"recipe: {r['kind']} {r.get('estimator') or r.get('function')} target={r.get('target')}"
        )
    if v.get("untrusted_types"):
        console.print(f"[yellow]types skops does not trust by default:[/] {', '.join(v['untrusted_types'])}")


@versions_app.command("alias")
def versions_alias(name: str, alias: str, version: int) -> None:
    """Point ALIAS (e.g. champion) at VERSION."""
    with _client() as c:
        c.set_alias(name, alias, version)
    console.print(f"{name}@{alias} → v{version}")


@versions_app.command("lineage")
def versions_lineage(name: str, version: int, as_json: JsonOpt = False) -> None:
    """Where a version came from: dataset version, parent version, trigger; and its children."""
    with _client() as c:
        lin = c.lineage(name, version)
    if as_json:
        _dump(lin)
        return
    _print_lineage(lin)


def _print_lineage(lin: dict[str, Any]) -> None:
    from rich.tree import Tree

    tree = Tree(f"[bold]{lin['model']}[/] v{lin['version']}  ({lin['origin']}, by {lin['created_by']})")
    dv = lin["dataset_version"]
    if dv:
        tree.add(
            f"dataset [cyan]{dv['dataset']}[/] v{dv['version']}  {dv['row_count']:,} rows  "
            f"hash {dv['content_hash'][:12]}"
        )
    if lin["parent"]:
        tree.add(f"parent v{lin['parent']['version']}  {_metrics(lin['parent']['metrics'])}")
    if lin["trigger_event_id"]:
        tree.add(f"triggered by event {lin['trigger_event_id']}")
    for child in lin["children"]:
        tree.add(f"child v{child['version']} ({child['origin']})")
    console.print(tree)


# ---------------------------------------------------------------------- datasets


@datasets_app.command("list")
def datasets_list(team: str | None = None, as_json: JsonOpt = False) -> None:
    """List datasets."""
    with _client() as c:
        items = c.list_datasets(team=team)
    if as_json:
        _dump(items)
        return
    _table(
        f"Datasets ({len(items)})",
        ["name", "team", "latest", "created by", "created"],
        [[d["name"], d["team"], d["latest_version"], d["created_by"], _when(d["created_at"])] for d in items],
    )


@datasets_app.command("show")
def datasets_show(name: str, as_json: JsonOpt = False) -> None:
    """A dataset and its versions."""
    with _client() as c:
        ds = c.get_dataset(name)
        versions = c.list_dataset_versions(name)
    if as_json:
        _dump({**ds, "versions": versions})
        return
    console.print(f"[bold]{ds['name']}[/]  team [cyan]{ds['team']}[/]  {ds['description'] or ''}")
    _dataset_versions_table(name, versions)


@datasets_app.command("versions")
def datasets_versions(name: str, as_json: JsonOpt = False) -> None:
    """A dataset's versions, newest first."""
    with _client() as c:
        versions = c.list_dataset_versions(name)
    if as_json:
        _dump(versions)
        return
    _dataset_versions_table(name, versions)


def _dataset_versions_table(name: str, versions: list[dict[str, Any]]) -> None:
    _table(
        f"Versions of dataset {name}",
        ["version", "rows", "format", "bytes", "content hash", "parent", "created"],
        [
            [
                v["version"],
                f"{v['row_count']:,}",
                v["format"],
                f"{v['size_bytes'] or 0:,}",
                v["content_hash"][:16],
                v["parent_version"],
                _when(v["created_at"]),
            ]
            for v in versions
        ],
    )


@datasets_app.command("upload")
def datasets_upload(
    name: str,
    path: Path,
    team: Annotated[str, typer.Option(help="Team, if the dataset is new")] = "default",
    rows: Annotated[int | None, typer.Option(help="Row count (read from parquet/csv if omitted)")] = None,
) -> None:
    """Upload a file as a new version of dataset NAME (content-hashed: same bytes, same version)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    data = path.read_bytes()
    fmt = path.suffix.lstrip(".") or "bin"
    if rows is None:
        import pandas as pd

        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path) if fmt == "csv" else None
        if frame is None:
            err.print("[red]error:[/] pass --rows for formats other than parquet and csv")
            raise typer.Exit(2)
        rows = len(frame)
    with _client() as c:
        try:
            c.get_dataset(name)
        except FleetAPIError as exc:
            if exc.status != 404:
                raise
            c.create_dataset(name, team)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
        ) as progress:
            task = progress.add_task(f"uploading {path.name}", total=len(data))
            dv = c.upload_dataset_version(
                name,
                data,
                row_count=rows,
                format=fmt,
                progress=lambda done, total: progress.update(task, completed=done),
            )
    console.print(f"{name} v{dv['version']}  {dv['row_count']:,} rows  hash {dv['content_hash'][:16]}")


# ---------------------------------------------------------------------- admin


@app.command()
def audit(
    actor: str | None = None,
    action: str | None = None,
    service: Annotated[str | None, typer.Option(help="registry, deployer, monitor, retrainer")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, denied, rejected or error")] = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """The platform's audit log (admins): every service's writes and refused attempts."""
    with _client() as c:
        entries = c.audit(actor=actor, action=action, service=service, outcome=outcome, limit=limit)
    if as_json:
        _dump(entries)
        return
    _table(
        "Audit log",
        ["when", "service", "actor", "role", "action", "resource", "outcome"],
        [
            [
                _when(e["at"]),
                e.get("service", "registry"),
                e["actor"],
                e["role"],
                e["action"],
                e["resource"],
                e.get("outcome", "ok"),
            ]
            for e in entries
        ],
    )


@tokens_app.command("issue")
def tokens_issue(
    subject: Annotated[str, typer.Option(help="Who the token is for")],
    role: Annotated[str, typer.Option(help="viewer, scientist, deployer or admin")] = "viewer",
    team: Annotated[list[str] | None, typer.Option(help="Repeatable; '*' for all teams")] = None,
    ttl_days: Annotated[float, typer.Option(help="Lifetime in days; 0 = never expires")] = 30,
) -> None:
    """Issue a bearer token (prints only the token, for scripts)."""
    with _client() as c:
        tok = c.issue_token(subject, role, team or [], ttl_days=ttl_days or None)
    print(tok["token"])


@tokens_app.command("list")
def tokens_list(as_json: JsonOpt = False) -> None:
    """Every recorded token: id, subject, role, teams, expiry, revocation (never the secret)."""
    with _client() as c:
        records = c.tokens()
    if as_json:
        _dump(records)
        return
    _table(
        "Tokens",
        ["id", "subject", "role", "teams", "issued", "expires", "issued by", "revoked"],
        [
            [
                t["token_id"],
                t["subject"],
                t["role"],
                ",".join(t["teams"]),
                _when(t["issued_at"]),
                _when(t["expires_at"]) if t["expires_at"] else "never",
                t["issued_by"],
                _when(t["revoked_at"]) if t.get("revoked_at") else "",
            ]
            for t in records
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (`fleet tokens list`)")],
) -> None:
    """Revoke a token: the registry refuses it at once, every other service within
    FLEET_REVOCATION_REFRESH_S (10 s by default)."""
    with _client() as c:
        record = c.revoke_token(token_id)
    console.print(f"revoked {record['token_id']} ({record['subject']}, {record['role']})")


@privacy_app.command("erase")
def privacy_erase(
    subject: Annotated[
        str, typer.Argument(help="The raw id (as sent in a PII field or as the routing key) or sha256:<hex>")
    ],
    model: Annotated[str | None, typer.Option(help="Erase from this model only")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Right to erasure: remove a data subject's served rows and their labels from the inference
    lake. Registered datasets are immutable and are not touched (see docs/security.md)."""
    with _client() as c:
        result = c.erase_subject(subject, model=model)
    if as_json:
        _dump(result)
        return
    console.print(
        f"erased {result['subject']}: {result['inference_rows']} served rows, "
        f"{result['feedback_rows']} labels, {len(result['partitions'])} partitions rewritten"
    )
    for partition in result["partitions"]:
        console.print(f"  {partition}")


# ---------------------------------------------------------------------- demo


# ---------------------------------------------------------------------- serving


def _parse_quota(values: list[str]) -> dict[str, Any] | None:
    """``--quota num_cpus=0.5 --quota max_replicas=3`` → a ResourceQuota dict (validated by the server)."""
    if not values:
        return None
    quota: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--quota")
        try:
            quota[key.strip()] = json.loads(raw)
        except ValueError:
            quota[key.strip()] = raw
    return quota


def _name_version(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise typer.BadParameter(f"version must be a number, got {version!r}", param_hint="NAME[:VERSION]")
    return name, int(version) if version else None


@app.command()
def deploy(
    ref: Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="Model, optionally a version")],
    quota: Annotated[
        list[str],
        typer.Option(
            "--quota",
            help="Dedicated deployment with these resources, repeatable KEY=VALUE: num_cpus, memory_mb, "
            "min_replicas, max_replicas, target_ongoing_requests, capacity_class",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
    as_json: JsonOpt = False,
) -> None:
    """Deploy a version (default: the latest) and route all traffic to it."""
    name, version = _name_version(ref)
    result = _client().deploy(name, version, quota=_parse_quota(quota))
    if as_json:
        _dump(result)
        return
    console.print(f"[green]deployed[/] {name} → routes now {_arms(result['route'])}")


@app.command()
def rollback(name: str, as_json: JsonOpt = False) -> None:
    """Send all traffic back to the previous stable version (effective on the next request)."""
    client = _client()
    result = client.rollback(name)
    if as_json:
        _dump(result)
        return
    console.print(
        f"[yellow]rolled back[/] {name} to v{result['version']} → routes now {_arms(client.routes(name))}"
    )


def _arms(routes: dict[str, Any]) -> str:
    table = routes.get("table", routes)
    arms = table.get("arms") or []
    return (
        ", ".join(
            f"v{a['version']} {a.get('weight', 0):g}%"
            + (" (shadow)" if a.get("mode") == "shadow" else "")
            + (" sticky" if a.get("sticky") else "")
            for a in arms
        )
        or "(no traffic)"
    )


def _placement(d: dict[str, Any]) -> str:
    placement = d.get("placement") or {}
    return f"{placement.get('kind', '-')}:{placement.get('app', '-')}"


@deployments_app.command("list")
def deployments_list(
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    state: Annotated[str | None, typer.Option(help="pending, deploying, ready, failed or retired")] = None,
    idle: Annotated[
        bool | None, typer.Option("--idle/--active", help="Only idle, or only active, versions")
    ] = None,
    placement: Annotated[str | None, typer.Option(help="pool or dedicated")] = None,
    name: Annotated[str | None, typer.Option(help="Model name contains")] = None,
    sort: Annotated[
        str, typer.Option(help="name, updated, last_request or traffic; -desc, e.g. -traffic")
    ] = "name",
    retired: Annotated[bool, typer.Option("--retired", help="Include retired versions")] = False,
    limit: LimitOpt = 50,
    offset: OffsetOpt = 0,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Deployed versions, a page at a time: placement, state, replicas, traffic, last request, idle."""
    with _client() as c:
        items, total = fetch(
            lambda size, at: c.deployments_page(
                team=team,
                state=state,
                idle=idle,
                placement=placement,
                name=name,
                sort=sort,
                include_retired=retired,
                limit=size,
                offset=at,
            ),
            limit=limit,
            offset=offset,
            everything=all_,
        )
    if as_json:
        _dump(items)
        return
    _table(
        title("Deployments", len(items), total, offset),
        ["model", "version", "team", "placement", "state", "replicas", "traffic %", "last request", "idle"],
        [
            [
                d.get("model"),
                d.get("version"),
                d.get("team"),
                _placement(d),
                d.get("state"),
                d.get("replicas"),
                f"{d['traffic_weight']:g}" + (" +shadow" if d.get("shadow") else ""),
                _when(d.get("last_request_at")),
                "idle" if d.get("idle") else "active",
            ]
            for d in items
        ],
    )
    more(len(items), total, offset)


@deployments_app.command("local")
def deployments_local(as_json: JsonOpt = False) -> None:
    """The shared pool's small models that the gateway serves in its own process (no hop to Ray):
    bytes, calls and mean predict time of each, and the models it leaves to the pool with the reason.
    Each gateway process has its own; this asks the one ``FLEET_GATEWAY_URL`` reaches."""
    show_local(_client(), console, as_json=as_json)


@deployments_app.command("show")
def deployments_show(name: str, as_json: JsonOpt = False) -> None:
    """One model's deployments with their quota as Ray applies it (actor resources, autoscaling);
    ``fleet-pool``: the shared pool's replicas, memory budget and loaded models with their bytes."""
    if name == POOL_NAME:
        show_pool(_client(), console, as_json=as_json)
        return
    result = _client().deployment(name)
    if as_json:
        _dump(result)
        return
    console.print(f"[bold]{name}[/] (team {result['team']})  routes: {_arms(result['route'])}")
    for d in result["deployments"]:
        quota = d.get("quota")
        _table(
            f"{name} v{d.get('version')} — {_placement(d)} — {d.get('state')}",
            ["property", "value"],
            [
                ["replicas", d.get("replicas")],
                ["traffic %", d.get("traffic_weight")],
                ["last request", _when(d.get("last_request_at"))],
                ["idle", "yes" if d.get("idle") else "no"],
                ["quota", json.dumps(quota) if quota else "shared pool"],
                *_ray_rows(d.get("ray")),
                ["error", d.get("error")],
            ],
        )


def _ray_rows(ray: dict[str, Any] | None) -> list[list[Any]]:
    """Ray's own view of a deployment, as table rows: what Serve holds and what Ray reserved."""
    if not ray:
        return [["ray", "not reported (serving control disconnected?)"]]
    scaling = ray.get("autoscaling") or {}
    options = ray.get("actor_options") or {}
    memory = options.get("memory")
    return [
        ["ray app", f"{ray.get('name')} {ray.get('status')} {ray.get('message') or ''}".strip()],
        [
            "autoscaling",
            ", ".join(f"{k}={v}" for k, v in scaling.items() if v is not None) or "fixed",
        ],
        [
            "actor options",
            f"num_cpus={options.get('num_cpus')}, memory="
            + (f"{memory / 2**20:.0f} MiB" if memory else "unset"),
        ],
        ["actor resources (Ray)", json.dumps(ray.get("actor_resources") or {})],
    ]


@routes_app.command("show")
def routes_show(name: str, as_json: JsonOpt = False) -> None:
    """A model's route table."""
    result = _client().routes(name)
    if as_json:
        _dump(result)
        return
    table = result.get("table", result)
    _table(
        f"{name} routes (revision {table.get('revision')})",
        ["version", "weight %", "mode", "sticky"],
        [[a["version"], a.get("weight"), a.get("mode"), a.get("sticky")] for a in table.get("arms", [])],
    )
    console.print(f"batching: {_batching(table.get('batching'))}")


def _batching(settings: dict[str, Any] | None) -> str:
    if not settings or all(v is None for v in settings.values()):
        return "the gateway's defaults"
    if settings.get("max_rows") == 1:
        return "off"
    shown = {k: v for k, v in settings.items() if v is not None}
    return ", ".join(f"{k}={v:g}" for k, v in shown.items()) + " (the rest: the gateway's defaults)"


@routes_app.command("batching")
def routes_batching(
    name: str,
    max_rows: Annotated[
        int | None, typer.Option(help="Rows per batched model call at most (1: batching off)")
    ] = None,
    max_delay_ms: Annotated[
        float | None, typer.Option(help="How long a request may wait for company while a call slot is free")
    ] = None,
    max_inflight: Annotated[int | None, typer.Option(help="Batched calls of one version at once")] = None,
    off: Annotated[bool, typer.Option("--off", help="No batching for this model")] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Back to the gateway's defaults")] = False,
    wait_s: Annotated[
        float, typer.Option(help="How long to wait for the gateway to batch by the new settings")
    ] = 10.0,
) -> None:
    """Set how gateways batch a model's requests (per model; kept across deploys and rollouts)."""
    given = off or any(v is not None for v in (max_rows, max_delay_ms, max_inflight))
    if reset and given:
        raise typer.BadParameter("--reset takes no other setting", param_hint="--reset")
    if off and max_rows not in (None, 1):
        raise typer.BadParameter("--off means --max-rows 1", param_hint="--off")
    if not (reset or given):
        raise typer.BadParameter(
            "give --max-rows, --max-delay-ms, --max-inflight, --off or --reset", param_hint="OPTIONS"
        )
    client = _client()
    if reset:
        result = client.reset_batching(name, wait_s=wait_s)
    else:
        result = client.set_batching(
            name,
            max_rows=1 if off else max_rows,
            max_delay_ms=max_delay_ms,
            max_inflight=max_inflight,
            wait_s=wait_s,
        )
    table = result["table"]
    shown = _batching(table.get("batching"))
    console.print(f"[green]batching set[/] {name} (revision {table['revision']}): {shown}")


@routes_app.command("set")
def routes_set(
    name: str,
    arms: Annotated[
        list[str],
        typer.Argument(
            metavar="VERSION=WEIGHT...",
            help="e.g. 1=90 2=10 3=shadow; add :sticky to assign by routing key (1=50:sticky)",
        ),
    ],
) -> None:
    """Set an explicit split: weighted, sticky and shadow arms."""
    parsed = []
    for item in arms:
        version, sep, rest = item.partition("=")
        if not sep or not version.isdigit():
            raise typer.BadParameter(f"expected VERSION=WEIGHT, got {item!r}", param_hint="ARMS")
        weight, _, flag = rest.partition(":")
        if weight == "shadow":
            parsed.append({"version": int(version), "weight": 0, "mode": "shadow"})
            continue
        try:
            parsed.append({"version": int(version), "weight": float(weight), "sticky": flag == "sticky"})
        except ValueError as exc:
            raise typer.BadParameter(f"weight must be a number, got {weight!r}", param_hint="ARMS") from exc
    result = _client().set_routes(name, parsed)
    console.print(f"[green]routes set[/] {name} → {_arms(result)}")


@app.command()
def predict(
    name: Annotated[str, typer.Argument(metavar="NAME[:VERSION]")],
    payload: Annotated[
        str,
        typer.Option("--json", help='A row {"feature": value} or a list of rows; "-" reads stdin'),
    ],
    routing_key: Annotated[str | None, typer.Option(help="Sticky routing key")] = None,
) -> None:
    """Predict through the gateway and print the answer with the version that served it."""
    model, version = _name_version(name)
    text = sys.stdin.read() if payload == "-" else payload
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from exc
    if isinstance(rows, dict) and "inputs" in rows:
        rows = rows["inputs"]
    _dump(_client().predict(model, rows, version=version, routing_key=routing_key))


@app.command()
def demo(
    keep_running: Annotated[bool, typer.Option(help="Keep the stack up until Ctrl-C")] = True,
) -> None:
    """Start the stack (unless running), register three models trained on scikit-learn's bundled datasets,
    and show them with their versions, metrics and lineage."""
    from fleet_sdk.demo import run_demo

    run_demo(console, keep_running=keep_running)


def main() -> None:
    try:
        app()
    except FleetAPIError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        err.print(f"[red]error {exc.status}:[/] {exc.problem.get('detail', exc)}{field}")
        sys.exit(1)
    except FleetUnavailable as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


# --------------------------------------------------------------------------- retraining


@app.command()
def retrain(
    ref: Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="Model, optionally the champion")],
    as_json: JsonOpt = False,
) -> None:
    """Retrain a model now (skips the cooldown, never runs two jobs for one model)."""
    name, version = _name_version(ref)
    result = _client().retrain(name, version)
    if as_json:
        _dump(result)
        return
    job = result.get("job")
    where = f" — job [bold]{job['id']}[/] ({job['state']})" if job else ""
    console.print(f"{result['action']}: {result['reason']}{where}")


@jobs_app.command("list")
def jobs_list(
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    state: Annotated[str | None, typer.Option(help="queued, running, registered, rejected or failed")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    sort: Annotated[str, typer.Option(help="created or model; -desc")] = "-created",
    limit: LimitOpt = 50,
    offset: OffsetOpt = 0,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Retraining jobs, newest first, a page at a time."""
    with _client() as c:
        items, total = fetch(
            lambda size, at: c.jobs_page(model, state, team=team, sort=sort, limit=size, offset=at),
            limit=limit,
            offset=offset,
            everything=all_,
        )
    if as_json:
        _dump(items)
        return
    _table(
        title("Jobs", len(items), total, offset),
        ["id", "model", "trigger", "state", "champion", "new", "reason", "started"],
        [
            [
                j["id"][:8],
                j["model"],
                j["trigger"],
                j["state"],
                j.get("champion_version") or "-",
                j.get("new_version") or "-",
                j.get("reason") or "",
                _when(j["created_at"]),
            ]
            for j in items
        ],
    )
    more(len(items), total, offset)


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: JsonOpt = False) -> None:
    """One job: its trigger, state, and the metrics of champion and candidate on the holdout."""
    job = _client().job(job_id)
    if as_json:
        _dump(job)
        return
    console.print(f"[bold]{job['model']}[/] job {job['id']}: {job['state']} — {job.get('reason') or ''}")
    result = job.get("result") or {}
    champion, candidate = result.get("champion_metrics") or {}, result.get("candidate_metrics") or {}
    if champion or candidate:
        _table(
            f"On the holdout ({result.get('holdout_rows', '?')} rows)",
            ["metric", f"champion v{job.get('champion_version')}", "candidate"],
            [
                [k, f"{champion.get(k, float('nan')):.4f}", f"{candidate.get(k, float('nan')):.4f}"]
                for k in champion
            ],
        )


@jobs_app.command("logs")
def jobs_logs(job_id: str) -> None:
    """What the job did, step by step."""
    for line in _client().job_logs(job_id):
        console.print(line, highlight=False)


# --------------------------------------------------------------------------- rollouts


def _rollout_line(r: dict[str, Any]) -> str:
    where = f"{r['strategy']} of {r['model']} v{r['version']}: [bold]{r['phase']}[/] at step {r['step']}"
    return f"{where} — {r.get('reason') or ''}"


@rollout_app.command("start")
def rollout_start(
    ref: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="The candidate version")],
    strategy: Annotated[str, typer.Option(help="direct, canary, ab, shadow or blue_green")] = "canary",
    steps: Annotated[str | None, typer.Option(help="Canary steps in percent, e.g. 5,25,50,100")] = None,
    interval: Annotated[float | None, typer.Option(help="Seconds each canary step is held")] = None,
    arm: Annotated[
        list[str], typer.Option("--arm", help="A/B split VERSION=WEIGHT, repeatable (default 50/50)")
    ] = [],  # noqa: B006 - typer needs a literal default
    kpi: Annotated[
        str | None,
        typer.Option(help="A/B KPI: accuracy, error_rate, mae, or a business KPI posted to /v1/outcomes"),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="A/B or shadow length, or the blue-green rollback window (s)")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the record")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a rollout of a version; the monitor's verdicts move it on (see `fleet rollout show`)."""
    name, version = _name_version(ref)
    if version is None:
        raise typer.BadParameter("name the candidate version", param_hint="NAME:VERSION")
    options: dict[str, Any] = {
        "reason": reason,
        "kpi": kpi,
        "duration_s": duration,
        "step_interval_s": interval,
    }
    if steps:
        options["steps"] = [int(x) for x in steps.split(",") if x.strip()]
    if arm:
        options["arms"] = [
            {"version": int(v), "weight": float(w)} for v, _, w in (a.partition("=") for a in arm)
        ]
    result = _client().request_rollout(
        name, version, strategy, **{k: v for k, v in options.items() if v is not None}
    )
    if as_json:
        _dump(result)
        return
    console.print(f"rollout [bold]{result['id']}[/]: " + _rollout_line(result))


@rollout_app.command("list")
def rollout_list(
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    state: Annotated[
        str | None,
        typer.Option(help="The phase: pending, progressing, paused, promoted, rolled_back, aborted, failed"),
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="direct, canary, ab, shadow or blue_green")] = None,
    sort: Annotated[str, typer.Option(help="created, updated or model; -desc")] = "-created",
    limit: LimitOpt = 50,
    offset: OffsetOpt = 0,
    all_: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rollouts, newest first, a page at a time."""
    with _client() as c:
        items, total = fetch(
            lambda size, at: c.rollouts_page(
                model, team=team, phase=state, strategy=strategy, sort=sort, limit=size, offset=at
            ),
            limit=limit,
            offset=offset,
            everything=all_,
        )
    if as_json:
        _dump(items)
        return
    _table(
        title("Rollouts", len(items), total, offset),
        ["id", "model", "version", "strategy", "phase", "step", "reason", "started"],
        [
            [
                r["id"][:8],
                r["model"],
                r["version"],
                r["strategy"],
                r["phase"],
                r["step"],
                r.get("reason") or "",
                _when(r["created_at"]),
            ]
            for r in items
        ],
    )
    more(len(items), total, offset)


@rollout_app.command("show")
def rollout_show(rollout_id: str, as_json: JsonOpt = False) -> None:
    """One rollout with its progress and the monitor's latest verdict."""
    result = _client().rollout(rollout_id)
    if as_json:
        _dump(result)
        return
    console.print(_rollout_line(result))
    progress = result.get("progress")
    if progress:
        verdict = progress.get("verdict") or {}
        rows = [
            ["baseline", f"v{progress.get('baseline')}"],
            ["steps", "/".join(str(x) for x in progress.get("steps") or []) or "-"],
            ["step held since", _when(progress.get("step_started_at"))],
            ["deadline", _when(progress.get("deadline"))],
            [
                "latest verdict",
                f"{verdict.get('verdict')} at step {verdict.get('step')}: {verdict.get('reason')}"
                if verdict
                else "-",
            ],
        ]
        _table("Progress", ["", ""], rows)


def _rollout_command(command: str, rollout_id: str, as_json: bool) -> None:
    result = _client().rollout_command(rollout_id, command)
    if as_json:
        _dump(result)
        return
    console.print(_rollout_line(result))


@rollout_app.command("pause")
def rollout_pause(rollout_id: str, as_json: JsonOpt = False) -> None:
    """Hold the current step (verdicts are still recorded)."""
    _rollout_command("pause", rollout_id, as_json)


@rollout_app.command("resume")
def rollout_resume(rollout_id: str, as_json: JsonOpt = False) -> None:
    """Carry on; the current step's hold starts again."""
    _rollout_command("resume", rollout_id, as_json)


@rollout_app.command("promote")
def rollout_promote(rollout_id: str, as_json: JsonOpt = False) -> None:
    """Give the candidate all traffic now."""
    _rollout_command("promote", rollout_id, as_json)


@rollout_app.command("abort")
def rollout_abort(rollout_id: str, as_json: JsonOpt = False) -> None:
    """Route all traffic back to the baseline."""
    _rollout_command("abort", rollout_id, as_json)


# --------------------------------------------------------------------------- monitoring


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@app.command()
def alerts(
    state: Annotated[str | None, typer.Option(help="firing or resolved")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    kind: Annotated[str | None, typer.Option(help="drift, anomaly or rollout")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's models")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning or critical")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Alerts to skip (the next page)")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Alerts raised by the monitor (drift, anomalies, failing canaries), newest first."""
    items = _client().alerts(
        state=state, model=model, kind=kind, team=team, severity=severity, limit=limit, offset=offset
    )
    if as_json:
        _dump(items)
        return
    colour = {"critical": "red", "warning": "yellow", "info": "blue"}
    _table(
        f"Alerts ({len(items)})",
        ["id", "state", "severity", "model", "version", "what", "summary", "started", "resolved"],
        [
            [
                a["id"],
                f"[{'red' if a['state'] == 'firing' else 'green'}]{a['state']}[/]",
                f"[{colour.get(a['severity'], 'white')}]{a['severity']}[/]",
                a["model"],
                a.get("version") or "-",
                f"{a['kind']}:{a['name']}",
                a["summary"],
                _when(a["started_at"]),
                _when(a.get("resolved_at")),
            ]
            for a in items
        ],
    )


def _arm_label(arm: dict[str, Any]) -> str:
    return f"v{arm['version']} " + ("shadow" if arm["mode"] == "shadow" else f"{arm['weight']:g}%")


@monitor_app.command("overview")
def monitor_overview(
    search: Annotated[str | None, typer.Option("--search", "-q", help="Names containing this")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's models")] = None,
    state: Annotated[str | None, typer.Option(help="serving, idle or 'not deployed'")] = None,
    alerting: Annotated[
        bool | None, typer.Option("--alerting/--not-alerting", help="With (or without) a firing alert")
    ] = None,
    drifting: Annotated[
        bool | None, typer.Option("--drifting/--not-drifting", help="With (or without) open drift")
    ] = None,
    rollout: Annotated[
        bool | None, typer.Option("--rollout/--no-rollout", help="Rollout in progress")
    ] = None,
    sort: Annotated[
        str, typer.Option(help="name, rps, error_rate, latency_p95, drift or alerts (numbers worst first)")
    ] = "name",
    order: Annotated[str | None, typer.Option(help="asc or desc")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Models per page")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Models to skip")] = 0,
    all_: Annotated[bool, typer.Option("--all", help="Page through every matching model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The fleet over the live window, a page at a time: state, traffic split, rps, errors, p95,
    drift, alerts; filtered and sorted by the monitor."""
    filters: dict[str, Any] = {
        "q": search,
        "team": team,
        "state": state,
        "alerting": alerting,
        "drifting": drifting,
        "rollout": rollout,
        "sort": sort,
        "order": order,
    }
    with _client() as c:
        result = c.overview(limit=limit, offset=offset, **filters)
        if all_:
            result["models"] = list(c.iter_overview(page_size=max(limit, 500), **filters))
            result["offset"] = 0
        monitor_url = c.monitor_url
    if as_json:
        _dump(result)
        return
    shown = result["models"]
    first = result["offset"] + 1 if shown else 0
    _table(
        f"Fleet over the last {result['window_s']:g} s — models {first}-{result['offset'] + len(shown)} "
        f"of {result['total']} ({result['total_models']} in all) — {result['alerts_firing']} alerts firing",
        ["model", "team", "state", "traffic", "rollout", "rps", "errors", "p95 ms", "drift", "alerts"],
        [
            [
                m["name"],
                m.get("team") or "-",
                m["state"],
                " · ".join(_arm_label(a) for a in m["arms"]) or "-",
                f"{m['rollout']['strategy']} {m['rollout']['phase']}" if m.get("rollout") else "-",
                f"{m['live']['rps']:.1f}",
                f"{m['live']['error_rate']:.1%}",
                _ms(m["live"]["latency_p95_ms"]),
                ", ".join(m["drifting"]) or "-",
                m["alerts_firing"],
            ]
            for m in shown
        ],
    )
    if not all_ and result["offset"] + len(shown) < result["total"]:
        console.print(f"Next page: --offset {result['offset'] + len(shown)} (or --all)")
    console.print(f"Dashboard: {monitor_url}/")


@monitor_app.command("show")
def monitor_show(name: str, as_json: JsonOpt = False) -> None:
    """One model: each version's live numbers and labelled performance, and its latest drift scores."""
    result = _client().model_health(name)
    if as_json:
        _dump(result)
        return
    _table(
        f"{name} — {result['state']}",
        ["version", "origin", "parent", "traffic", "rps", "errors", "p95 ms", "performance"],
        [
            [
                v["version"],
                v["origin"],
                v.get("parent_version") or "-",
                "-"
                if v.get("weight") is None
                else (v["mode"] if v["mode"] == "shadow" else f"{v['weight']:g}%"),
                f"{v['live']['rps']:.1f}",
                f"{v['live']['error_rate']:.1%}",
                _ms(v["live"]["latency_p95_ms"]),
                _metrics(v["performance"]),
            ]
            for v in result["versions"]
        ],
    )
    for drift in result["drift"]:
        _table(
            f"{drift['kind']} drift, v{drift['version']} — "
            + ("episode open" if drift["active"] else "no episode")
            + f" (last window: {drift['sample_size']} rows)",
            ["feature", "test", "statistic", "p-value", "threshold", "drifted"],
            [
                [
                    s["feature"],
                    s["test"],
                    f"{s['statistic']:.4g}",
                    "-" if s.get("p_value") is None else f"{s['p_value']:.3g}",
                    f"{s['threshold']:.3g}",
                    "[red]yes[/]" if s["drifted"] else "no",
                ]
                for s in drift["scores"]
            ],
        )


@monitor_app.command("config")
def monitor_config(
    name: str,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="threshold=value, e.g. drift_psi=0.3 (replaces overrides)"),
    ] = None,
) -> None:
    """A model's monitoring thresholds as JSON (overrides and effective values); --set changes them."""
    thresholds: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/] --set expects threshold=value, got {item!r}")
            raise typer.Exit(2)
        try:
            thresholds[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            thresholds[key.strip()] = value  # a plain word, such as analysis_kpi=accuracy
    _dump(_client().monitor_config(name, **thresholds))


if __name__ == "__main__":
    main()
