"""Paging for the ``fleet ... list`` commands: the first page by default (``--limit``, ``--offset``),
``--all`` for every match, and a title that says how many there are ("showing 50 of 1,000")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

PageFetcher = Callable[[int, int], dict[str, Any]]
"""``(limit, offset) -> {"items", "total", "limit", "offset"}``: one page of a listing."""

ALL_PAGE_SIZE = 500
"""Page size while ``--all`` pages through a listing (the APIs' largest)."""

LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=500, help="Rows to show (one page)")]
OffsetOpt = Annotated[int, typer.Option("--offset", min=0, help="Rows to skip (the next page)")]
AllOpt = Annotated[bool, typer.Option("--all", help="Page through every match, not only the first page")]

hints = Console(stderr=True)


def fetch(
    page: PageFetcher, *, limit: int, offset: int, everything: bool
) -> tuple[list[dict[str, Any]], int]:
    """The rows to show and how many match in all: one page, or with ``everything`` every page
    from ``offset`` on."""
    if not everything:
        first = page(limit, offset)
        return list(first["items"]), int(first["total"])
    items: list[dict[str, Any]] = []
    at = offset
    while True:
        result = page(ALL_PAGE_SIZE, at)
        items += result["items"]
        at += len(result["items"])
        if not result["items"] or at >= result["total"]:
            return items, int(result["total"])


def title(what: str, shown: int, total: int, offset: int = 0) -> str:
    """``Deployments (1,000)`` when every match is shown, else ``Deployments (showing 50 of 1,000)``
    (or ``showing 51-100 of 1,000`` past the first page)."""
    if shown >= total and offset == 0:
        return f"{what} ({total:,})"
    if shown == 0:
        return f"{what} (none of {total:,} from offset {offset:,})"
    where = f"{offset + 1:,}-{offset + shown:,}" if offset else f"{shown:,}"
    return f"{what} (showing {where} of {total:,})"


def more(shown: int, total: int, offset: int = 0) -> None:
    """Say how to see the rest, on stderr (so a pipe gets only the table)."""
    if offset + shown < total:
        left, after = total - offset - shown, offset + shown
        hints.print(f"[dim]{left:,} more: --offset {after} for the next page, --all for every one[/]")
