"""``fleet top``: a live terminal view of the fleet's busiest, slowest, erroring and drifting models.

Each frame is four pages of the monitor's ``GET /v1/overview``, sorted server-side by traffic,
p95 latency, error rate and drift, so a frame costs four small answers whatever the fleet's size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fleet_sdk.client import Client
from fleet_sdk.errors import FleetAPIError, FleetUnavailable

console = Console()


@dataclass(frozen=True)
class Panel:
    """One of the four tables: the sort it asks the monitor for and what makes a row worth showing."""

    title: str
    sort: str
    column: str

    def value(self, row: dict[str, Any]) -> float | None:
        live = row["live"]
        if self.sort == "rps":
            return float(live["rps"]) if live["rps"] > 0 else None
        if self.sort == "latency_p95":
            return live["latency_p95_ms"]  # type: ignore[no-any-return]
        if self.sort == "error_rate":
            return float(live["error_rate"]) if live["error_rate"] > 0 else None
        if row["drifting"] or row.get("drift_score") is not None:
            return row.get("drift_score") or 0.0
        return None

    def shown(self, row: dict[str, Any]) -> str:
        value = self.value(row)
        if self.sort == "rps":
            return f"{value:.1f}"
        if self.sort == "latency_p95":
            return f"{value:.1f} ms"
        if self.sort == "error_rate":
            return f"{value:.1%}"
        kinds = ", ".join(row["drifting"])
        return f"{value:.3f}" + (f" [red]{kinds}[/]" if kinds else "")


PANELS = (
    Panel("Busiest", "rps", "rps"),
    Panel("Slowest", "latency_p95", "p95"),
    Panel("Erroring", "error_rate", "errors"),
    Panel("Drifting", "drift", "PSI / episodes"),
)


def _table(panel: Panel, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=panel.title, title_justify="left", header_style="bold cyan", expand=True)
    table.add_column("model", overflow="fold", ratio=3)
    table.add_column("team", overflow="fold", ratio=2)
    table.add_column(panel.column, justify="right", ratio=2)
    table.add_column("alerts", justify="right", ratio=1)
    shown = [r for r in rows if panel.value(r) is not None]
    for row in shown:
        alerts = row["alerts_firing"]
        table.add_row(
            row["name"], row["team"] or "-", panel.shown(row), f"[red]{alerts}[/]" if alerts else "0"
        )
    if not shown:
        table.add_row("[dim]none[/]", "", "", "")
    return table


def frame(client: Client, *, team: str | None, limit: int) -> RenderableType:
    """One frame: a header line and the four tables."""
    pages = {p.sort: client.overview(sort=p.sort, team=team, limit=limit) for p in PANELS}
    first = pages["rps"]
    scope = f"team {team}" if team else "all teams you see"
    header = Text.from_markup(
        f"[bold]fleet top[/] · {first['total']:,} models ({scope}) · "
        f"[{'red' if first['alerts_firing'] else 'green'}]{first['alerts_firing']} alerts firing[/] · "
        f"{first['events_ingested']:,} events ingested · window {first['window_s']:g} s · "
        f"{datetime.now().strftime('%H:%M:%S')}"
    )
    grid = Table.grid(expand=True, padding=(0, 2))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    tables = [_table(p, pages[p.sort]["models"]) for p in PANELS]
    grid.add_row(tables[0], tables[1])
    grid.add_row(tables[2], tables[3])
    return Group(header, grid)


def _unavailable(exc: Exception) -> RenderableType:
    return Text.from_markup(f"[red]monitor unreachable:[/] {exc} (retrying)")


def top(
    team: Annotated[str | None, typer.Option(help="Only this team's models")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Models per table")] = 10,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between refreshes")] = 2.0,
) -> None:
    """Live view of the busiest, slowest, erroring and drifting models (Ctrl-C to quit)."""
    with Client() as client:
        if once:
            console.print(frame(client, team=team, limit=limit))
            return
        try:
            with Live(frame(client, team=team, limit=limit), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    try:
                        live.update(frame(client, team=team, limit=limit), refresh=True)
                    except FleetUnavailable as exc:
                        live.update(_unavailable(exc), refresh=True)
                    except FleetAPIError as exc:
                        if exc.status in (401, 403, 422):
                            raise
                        live.update(_unavailable(exc), refresh=True)
        except KeyboardInterrupt:
            return
