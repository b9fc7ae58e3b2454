"""``fleet register``: one model file, or many through manifests, for pipelines and CI.

Registration is concurrent (a bounded thread pool), shown with a progress bar and summed up in a
table (or JSON); the exit code is 1 when any entry failed, and each failed entry is named with its
reason while the others still land.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleet_sdk.cli_delivery import EXIT_FAILED, exit_code, print_delivery
from fleet_sdk.client import Client
from fleet_sdk.onboarding import (
    DEFAULT_CONCURRENCY,
    MANIFEST_SUFFIXES,
    EntryResult,
    OnboardingReport,
    PlannedEntry,
    parse_entry,
    plan,
    read_document,
    register_planned,
)

console = Console()
err = Console(stderr=True)

STATUS_STYLE = {"registered": "green", "unchanged": "cyan", "valid": "green", "failed": "red"}


def _pairs(values: list[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` options; values are JSON where they parse (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def _json_or_file(value: str, option: str) -> Any:
    """Inline JSON, or a YAML/JSON/TOML file holding the value."""
    path = Path(value)
    try:
        if path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            return read_document(path)
        return json.loads(value)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"neither a readable file nor JSON: {exc}", param_hint=option) from exc


def _sibling_manifest(artifact: Path) -> Path | None:
    for suffix in MANIFEST_SUFFIXES:
        candidate = artifact.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _single(artifact: Path, flags: dict[str, Any]) -> list[PlannedEntry]:
    """One entry: the manifest next to the file (``churn.yaml`` for ``churn.skops``), if any,
    overridden by the flags given."""
    raw: dict[str, Any] = {}
    sibling = _sibling_manifest(artifact)
    if sibling is not None:
        document = read_document(sibling)
        if not isinstance(document, dict) or "models" in document:
            raise typer.BadParameter(
                f"{sibling} is not a one-model manifest; use --manifest for it", param_hint="FILE"
            )
        raw.update(document)
    raw.update({k: v for k, v in flags.items() if v not in (None, [], {})})
    raw["artifact"] = str(artifact.resolve())
    return [parse_entry(raw, base=artifact.parent, source=str(artifact))]


def _table(report: OnboardingReport) -> None:
    table = Table(title="fleet register", title_justify="left", header_style="bold cyan")
    for column in ("model", "team", "version", "status", "detail"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        detail = r.reason or (f"sha256 {r.sha256[:12]}" if r.sha256 else "")
        style = STATUS_STYLE[r.status]
        table.add_row(
            r.name,
            r.team or "-",
            str(r.version) if r.version is not None else "-",
            f"[{style}]{r.status}[/]",
            detail,
        )
    console.print(table)
    counts = ", ".join(
        f"{report.count(s)} {s}" for s in ("registered", "unchanged", "valid", "failed") if report.count(s)
    )
    console.print(counts or "nothing to register")


def register(
    artifact: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]",
            help="A model file (.skops, .onnx, .zip); a manifest next to it (same name, .yaml/.json/"
            ".toml) supplies what the flags do not. A manifest file here is read as --manifest.",
        ),
    ] = None,
    manifest: Annotated[
        list[Path],
        typer.Option(
            "--manifest",
            "-m",
            help="A manifest of one or many models, or a directory of manifests (repeatable)",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
    name: Annotated[str | None, typer.Option(help="Model name")] = None,
    team: Annotated[str | None, typer.Option(help="Team of the model (created if missing)")] = None,
    flavor: Annotated[
        str | None, typer.Option(help="sklearn, onnx or python (default: by extension)")
    ] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression or other")] = None,
    signature: Annotated[
        str | None, typer.Option(help="The signature: JSON, or a YAML/JSON/TOML file")
    ] = None,
    example: Annotated[
        list[str],
        typer.Option("--example", help="An example input row as JSON (repeatable); infers the signature"),
    ] = [],  # noqa: B006
    metric: Annotated[list[str], typer.Option("--metric", help="KEY=VALUE (repeatable)")] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option("--tag", help="A tag (repeatable)")] = [],  # noqa: B006
    description: Annotated[str | None, typer.Option(help="Description")] = None,
    deploy_policy: Annotated[
        str | None, typer.Option(help="none, direct, canary or gated (the model's delivery gate)")
    ] = None,
    quota: Annotated[
        list[str],
        typer.Option("--quota", help="Dedicated deployment resources, KEY=VALUE (repeatable)"),
    ] = [],  # noqa: B006
    alias: Annotated[list[str], typer.Option("--alias", help="An alias (repeatable)")] = [],  # noqa: B006
    version: Annotated[int | None, typer.Option(help="Explicit version number")] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Registrations in flight at once")
    ] = DEFAULT_CONCURRENCY,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the entries locally; register nothing")
    ] = False,
    wait_checks: Annotated[
        float,
        typer.Option(
            "--wait-checks",
            help="Seconds to wait for the delivery checks of gated versions; exits 1 if one failed or was "
            "rejected, 3 if one awaits approval (0: do not wait)",
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Register model files: one (FILE with flags or its manifest) or many (--manifest FILE_OR_DIR).

    Idempotent: bytes a model already holds are reported `unchanged`, not registered again.
    Exits 1 when any entry failed, naming each; the others are registered all the same.
    """
    paths = list(manifest)
    if artifact is not None and artifact.suffix.lower() in MANIFEST_SUFFIXES:
        paths.append(artifact)
        artifact = None
    if artifact is None and not paths:
        raise typer.BadParameter("give a model FILE or --manifest", param_hint="FILE")
    flags = {
        "name": name,
        "team": team,
        "flavor": flavor,
        "task": task,
        "signature": _json_or_file(signature, "--signature") if signature else None,
        "example_input": [_json_or_file(row, "--example") for row in example],
        "metrics": _pairs(metric, "--metric"),
        "tags": tag,
        "description": description,
        "deploy_policy": deploy_policy,
        "quota": _pairs(quota, "--quota"),
        "aliases": alias,
        "version": version,
    }
    if paths and any(v not in (None, [], {}) for v in flags.values()):
        raise typer.BadParameter(
            "model flags (--name, --team, ...) describe one FILE; put them in the manifest instead",
            param_hint="--manifest",
        )
    planned = _single(artifact, flags) if artifact is not None else []
    if paths:
        planned.extend(plan(paths))
    report = _run(planned, concurrency=concurrency, dry_run=dry_run, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _table(report)
    for failed in report.failed:
        err.print(f"[red]failed:[/] {failed.name} ({failed.source}): {failed.reason}")
    if not report.ok:
        raise typer.Exit(1)
    if wait_checks > 0 and not dry_run:
        raise typer.Exit(_wait_for_gates(report, wait_checks, quiet=as_json))


def _wait_for_gates(report: OnboardingReport, timeout_s: float, *, quiet: bool) -> int:
    """Wait for the checks of each gated version just registered; the worst exit code."""
    worst = 0
    with Client() as client:
        for result in report.results:
            if result.status != "registered" or result.version is None:
                continue
            delivery = client.wait_for_checks(result.name, result.version, timeout_s=timeout_s)
            if delivery["state"] is None:
                continue
            if not quiet:
                print_delivery(delivery)
            code = exit_code(delivery["state"])
            worst = code if worst == 0 or code == EXIT_FAILED else worst
    return worst


def _run(planned: list[PlannedEntry], *, concurrency: int, dry_run: bool, quiet: bool) -> OnboardingReport:
    client = Client()
    try:
        with Progress(
            TextColumn("[bold]registering"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=err,
            disable=quiet or not planned,
        ) as progress:
            bar = progress.add_task("register", total=len(planned), last="")

            def advance(result: EntryResult) -> None:
                progress.update(bar, advance=1, last=f"{result.name}: {result.status}")

            return register_planned(
                client, planned, concurrency=concurrency, dry_run=dry_run, on_result=advance
            )
    finally:
        client.close()
