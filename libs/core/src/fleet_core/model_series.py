"""Which models keep their own labelled series in Prometheus (``FLEET_METRICS_MODEL_SERIES``).

A fleet of 1,000 models exports tens of thousands of per-model series (the gateway's latency
histogram alone is 17 series per model, version and arm). The setting bounds that:

- ``all``: every model has its own series (the default; fine for a few hundred models).
- ``top:N``: the N busiest models keep their own series; every other model is folded into
  ``model="_other"`` (``version="_other"``), per arm and status, so sums over the fleet stay right.
- ``team``: no per-model series at all: one ``model="_other"`` series per team.

The ``team`` label is on every per-model series in all three modes, so ``sum by (team)`` works
the same whatever the setting.

**Ranking.** The busiest models are re-ranked every ``rank_interval_s`` (60 s by default) from
the traffic counted since the previous ranking, so the set changes at most once a minute and a
model that went quiet gives up its place. Until the first ranking, models are admitted as they
come while places are free. Ties keep the incumbents.

**Counters never go backwards.** A per-model counter counts only the increments made while the
model held its own series; ``_other`` counts the increments of every model while it was folded.
A model that enters the top gets a fresh series starting from zero (its ``_created`` is the time it
entered); one that leaves has its series removed (it ends in Prometheus as a stale series), and its
later traffic counts in ``_other``. So no exported counter ever decreases, each request is counted
in exactly one series, and ``sum(rate(...))`` over all series is the fleet's true rate at any time.
A model that comes back later starts a new series from zero, which ``rate()`` reads as a reset
(correct: the series was absent in between).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator

OTHER = "_other"
"""The ``model`` (and ``version``) label value of the series that folded models count in."""

SeriesMode = Literal["all", "top", "team"]
K = TypeVar("K")
F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class ModelSeriesPolicy:
    """A parsed ``FLEET_METRICS_MODEL_SERIES``."""

    mode: SeriesMode = "all"
    top: int = 0

    @classmethod
    def parse(cls, value: str) -> ModelSeriesPolicy:
        """``all``, ``team`` or ``top:N`` (N ≥ 1); ValueError saying what is accepted otherwise."""
        text = value.strip().lower()
        if text in ("all", "team"):
            return cls(mode=text)  # type: ignore[arg-type]
        head, _, count = text.partition(":")
        if head == "top" and count.isdigit() and int(count) >= 1:
            return cls(mode="top", top=int(count))
        raise ValueError(f"{value!r} is not one of 'all', 'team' or 'top:N' with N a positive integer")

    def __str__(self) -> str:
        return f"top:{self.top}" if self.mode == "top" else self.mode


class ModelSeriesSelector:
    """Decides, per model, whether it keeps its own series; ``count`` is the hot path (one dict
    update), ``rerank`` runs every ``rank_interval_s``. ``pinned`` names models that keep their own
    series whatever their traffic (e.g. the monitor's models with a firing alert)."""

    def __init__(
        self,
        policy: ModelSeriesPolicy,
        *,
        rank_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.rank_interval_s = rank_interval_s
        self.clock = clock
        self._recent: dict[str, float] = {}
        self._kept: set[str] = set()
        self._pinned: frozenset[str] = frozenset()
        self._next_rank = clock() + rank_interval_s

    @property
    def kept(self) -> frozenset[str]:
        """The models holding their own series now (``all``: empty, every model does)."""
        return frozenset(self._kept | self._pinned)

    def count(self, model: str, requests: float = 1.0) -> None:
        """Traffic of ``model`` since the last ranking (used only by ``top:N``)."""
        if self.policy.mode == "top":
            self._recent[model] = self._recent.get(model, 0.0) + requests

    def keeps(self, model: str) -> bool:
        mode = self.policy.mode
        if mode == "all" or model in self._pinned:
            return True
        if mode == "team":
            return False
        if model in self._kept:
            return True
        if len(self._kept) < self.policy.top:  # a free place: taken at once, not at the next ranking
            self._kept.add(model)
            return True
        return False

    def due(self) -> bool:
        return self.clock() >= self._next_rank

    def pin(self, models: Iterable[str]) -> None:
        """Models that keep their own series whatever their traffic (until the next ``pin``)."""
        self._pinned = frozenset(models)

    def rerank(self, traffic: dict[str, float] | None = None) -> tuple[set[str], set[str]]:
        """Keep the ``top`` busiest (``traffic``, or what ``count`` added up since the last ranking);
        returns (entered, left). Pinned models are kept outside the ranking."""
        self._next_rank = self.clock() + self.rank_interval_s
        if self.policy.mode != "top":
            self._recent.clear()
            return set(), set()
        scores = self._recent if traffic is None else traffic
        # Busiest first; among equals the incumbents stay, then by name (stable across gateways).
        ranked = sorted(scores, key=lambda m: (-scores[m], m not in self._kept, m))
        chosen = {m for m in ranked[: self.policy.top] if scores[m] > 0}
        for model in sorted(self._kept - chosen):  # quiet incumbents keep free places
            if len(chosen) >= self.policy.top:
                break
            chosen.add(model)
        entered, left = chosen - self._kept, self._kept - chosen
        self._kept = chosen
        self._recent = {}
        return entered, left


class FoldedTotals(Generic[K, F]):
    """Scrape-time accounting of cumulative values (counters, histogram buckets) into each kept
    key's own series and the folded ``_other`` series, by the rule in the module docstring.

    The caller keeps the raw cumulative totals of every key (they only grow) and, on each scrape,
    says for every key whether its model holds its own series now. ``split`` returns the key's own
    values (its totals less what it had when it entered) or None, in which case what the key gained
    since the previous scrape was added to ``folded[fold_key]``. Each increment is counted once, in
    the series its model belonged to at the first scrape that saw it."""

    def __init__(self) -> None:
        self._seen: dict[K, tuple[float, ...]] = {}
        self._base: dict[K, tuple[float, ...]] = {}
        self.folded: dict[F, list[float]] = {}

    def split(
        self, key: K, totals: tuple[float, ...], *, kept: bool, fold_key: F
    ) -> tuple[float, ...] | None:
        previous = self._seen.get(key)
        if previous is None or len(previous) != len(totals) or totals[0] < previous[0]:
            previous = tuple(0.0 for _ in totals)  # new, or its source began it again
            self._base.pop(key, None)
        self._seen[key] = totals
        if kept:
            # Its own series starts from the previous scrape: what came earlier is in _other.
            base = self._base.setdefault(key, previous)
            return tuple(t - b for t, b in zip(totals, base, strict=True))
        self._base.pop(key, None)
        sums = self.folded.setdefault(fold_key, [0.0] * len(totals))
        for i, (t, p) in enumerate(zip(totals, previous, strict=True)):
            sums[i] += t - p
        return None

    def forget(self, present: Iterable[K]) -> None:
        """Drop the state of keys no longer tracked (their source forgot them)."""
        for gone in self._seen.keys() - set(present):
            del self._seen[gone]
            self._base.pop(gone, None)


def check_model_series(value: str) -> str:
    """Validator of the ``metrics_model_series`` setting: the value, if ``ModelSeriesPolicy`` parses it."""
    ModelSeriesPolicy.parse(value)
    return value


ModelSeriesSetting = Annotated[str, AfterValidator(check_model_series)]


__all__ = [
    "OTHER",
    "FoldedTotals",
    "ModelSeriesPolicy",
    "ModelSeriesSelector",
    "ModelSeriesSetting",
    "check_model_series",
]
