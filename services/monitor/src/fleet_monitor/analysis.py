"""Rollout analysis: the candidate arm against the baseline arm, on the same stretch of time.

For a canary step the question is "is the candidate no worse?": it fails on a higher error rate
(Fisher's exact test, and more than ``max_error_rate_increase`` worse), a slower p95, or a lower
labelled accuracy; it passes once it has served ``min_requests`` without failing; before that it
is inconclusive. For an A/B test the question is "which arm is better on the KPI?": a two-sided
test (Fisher's exact test on proportions, Welch's t-test on absolute errors) at ``alpha``; a
business KPI (any other name: the outcomes other systems post, ``outcome.recorded``) is tested the
same way, on proportions when every outcome is 0 or 1 and on means otherwise, higher better; the
candidate passes if it is significantly better, fails if significantly worse, and the test stays
inconclusive while the difference is not significant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ddsketch import DDSketch
from scipy import stats

from fleet_core.events import ArmMetrics, Verdict
from fleet_monitor.windows import new_sketch

Kpi = Literal["accuracy", "error_rate", "mae"]
KPIS: tuple[str, ...] = ("accuracy", "error_rate", "mae")
MAX_ERRORS_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class AnalysisPolicy:
    min_requests: int = 50
    max_error_rate_increase: float = 0.02
    max_error_rate_without_baseline: float = 0.05
    max_latency_ratio: float = 1.5
    latency_slack_ms: float = 10.0
    max_accuracy_drop: float = 0.05
    min_labelled: int = 30
    alpha: float = 0.05


@dataclass(slots=True)
class ArmSample:
    """What one arm did since the current rollout step began."""

    requests: int = 0
    errors: int = 0
    latency: DDSketch = field(default_factory=new_sketch)
    labelled: int = 0
    correct: int = 0
    abs_errors: list[float] = field(default_factory=list)
    outcomes: dict[str, list[float]] = field(default_factory=dict)
    """Business KPI name -> the outcomes (outcome.recorded) joined to this arm."""

    def record_request(self, latency_ms: float, error: bool) -> None:
        self.requests += 1
        self.errors += int(error)
        self.latency.add(max(latency_ms, 1e-3))

    def record_label(self, label: object, prediction: object, task: str) -> None:
        self.labelled += 1
        if task == "regression":
            try:
                if len(self.abs_errors) < MAX_ERRORS_KEPT:
                    self.abs_errors.append(abs(float(prediction) - float(label)))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return
        else:
            self.correct += int(str(label) == str(prediction))

    def record_outcome(self, kpi: str, value: float) -> None:
        values = self.outcomes.setdefault(kpi, [])
        if len(values) < MAX_ERRORS_KEPT:
            values.append(value)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95(self) -> float | None:
        return float(self.latency.get_quantile_value(0.95)) if self.latency.count else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled and not self.abs_errors else None

    @property
    def mae(self) -> float | None:
        return float(np.mean(self.abs_errors)) if self.abs_errors else None

    def kpi(self, kpi: str) -> float | None:
        if kpi == "error_rate":
            return self.error_rate if self.requests else None
        if kpi == "mae":
            return self.mae
        if kpi not in KPIS:
            values = self.outcomes.get(kpi)
            return float(np.mean(values)) if values else None
        return self.accuracy

    def metrics(self, kpi: str | None) -> ArmMetrics:
        business = kpi is not None and kpi not in KPIS
        values = self.outcomes.get(kpi or "", []) if business else []
        low, high = confidence_interval(values) if values else (None, None)
        return ArmMetrics(
            requests=self.requests,
            error_rate=self.error_rate,
            latency_p95_ms=self.p95,
            kpi=self.kpi(kpi or "accuracy"),
            kpi_samples=len(values) if business else None,
            kpi_low=low,
            kpi_high=high,
        )


def _binary(values: list[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """The KPI's confidence interval: Wilson's for a proportion (0/1 outcomes), Student's t for a
    mean; None with too few outcomes."""
    n = len(values)
    if n < 2:
        return None, None
    if _binary(values):
        ci = stats.binomtest(int(sum(values)), n).proportion_ci(confidence_level=level, method="wilson")
        return round(float(ci.low), 6), round(float(ci.high), 6)
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return round(float(low), 6), round(float(high), 6)


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    reason: str
    p_value: float | None = None


def _fisher(a_hits: int, a_total: int, b_hits: int, b_total: int, alternative: str) -> float:
    table = [[a_hits, a_total - a_hits], [b_hits, b_total - b_hits]]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


def analyse_canary(candidate: ArmSample, baseline: ArmSample | None, policy: AnalysisPolicy) -> Finding:
    """Is the candidate no worse than the baseline on this step?"""
    if candidate.requests < policy.min_requests:
        return Finding(
            "inconclusive",
            f"candidate served {candidate.requests} of the {policy.min_requests} requests needed",
        )
    has_baseline = baseline is not None and baseline.requests >= policy.min_requests
    if has_baseline:
        assert baseline is not None
        p = _fisher(candidate.errors, candidate.requests, baseline.errors, baseline.requests, "greater")
        if candidate.error_rate > baseline.error_rate + policy.max_error_rate_increase and p < policy.alpha:
            return Finding(
                "fail",
                f"error rate {candidate.error_rate:.1%} against the baseline's {baseline.error_rate:.1%}",
                p,
            )
        cand_p95, base_p95 = candidate.p95, baseline.p95
        if cand_p95 is not None and base_p95 is not None:
            limit = max(base_p95 * policy.max_latency_ratio, base_p95 + policy.latency_slack_ms)
            if cand_p95 > limit:
                return Finding(
                    "fail", f"p95 latency {cand_p95:.1f} ms above {limit:.1f} ms (baseline {base_p95:.1f} ms)"
                )
        cand_acc, base_acc = candidate.accuracy, baseline.accuracy
        if (
            cand_acc is not None
            and base_acc is not None
            and min(candidate.labelled, baseline.labelled) >= policy.min_labelled
            and cand_acc < base_acc - policy.max_accuracy_drop
        ):
            p_acc = _fisher(
                candidate.correct, candidate.labelled, baseline.correct, baseline.labelled, "less"
            )
            if p_acc < policy.alpha:
                return Finding(
                    "fail", f"accuracy {cand_acc:.1%} against the baseline's {base_acc:.1%}", p_acc
                )
        return Finding(
            "pass",
            f"{candidate.requests} requests: error rate {candidate.error_rate:.1%} "
            f"(baseline {baseline.error_rate:.1%}), p95 {_ms(cand_p95)} (baseline {_ms(base_p95)})",
            p,
        )
    if candidate.error_rate > policy.max_error_rate_without_baseline:
        return Finding("fail", f"error rate {candidate.error_rate:.1%} with no baseline traffic to compare")
    return Finding(
        "pass", f"{candidate.requests} requests, error rate {candidate.error_rate:.1%}, no baseline traffic"
    )


def analyse_ab(candidate: ArmSample, baseline: ArmSample, kpi: str, policy: AnalysisPolicy) -> Finding:
    """Is one arm significantly better on the KPI (two-sided test at ``alpha``)?"""
    if kpi not in KPIS:
        return _analyse_business(candidate, baseline, kpi, policy)
    if kpi == "error_rate":
        n_c, n_b = candidate.requests, baseline.requests
        if min(n_c, n_b) < policy.min_requests:
            return Finding("inconclusive", f"{n_c} and {n_b} requests; {policy.min_requests} per arm needed")
        p = _fisher(candidate.errors, n_c, baseline.errors, n_b, "two-sided")
        better = candidate.error_rate < baseline.error_rate
    elif kpi == "mae":
        n_c, n_b = len(candidate.abs_errors), len(baseline.abs_errors)
        if min(n_c, n_b) < policy.min_labelled:
            return Finding(
                "inconclusive", f"{n_c} and {n_b} labelled rows; {policy.min_labelled} per arm needed"
            )
        test = stats.ttest_ind(candidate.abs_errors, baseline.abs_errors, equal_var=False)
        p = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
        better = (candidate.mae or 0.0) < (baseline.mae or 0.0)
    else:
        n_c, n_b = candidate.labelled, baseline.labelled
        if min(n_c, n_b) < policy.min_labelled:
            return Finding(
                "inconclusive", f"{n_c} and {n_b} labelled rows; {policy.min_labelled} per arm needed"
            )
        p = _fisher(candidate.correct, n_c, baseline.correct, n_b, "two-sided")
        better = (candidate.accuracy or 0.0) > (baseline.accuracy or 0.0)
    c_val, b_val = candidate.kpi(kpi), baseline.kpi(kpi)
    numbers = f"{kpi} {_num(c_val)} (candidate, n={n_c}) against {_num(b_val)} (baseline, n={n_b}), p={p:.3g}"
    if p >= policy.alpha:
        return Finding("inconclusive", f"no significant difference yet: {numbers}", p)
    if better:
        return Finding("pass", f"candidate wins: {numbers}", p)
    return Finding("fail", f"baseline wins: {numbers}", p)


def _analyse_business(candidate: ArmSample, baseline: ArmSample, kpi: str, policy: AnalysisPolicy) -> Finding:
    """A business KPI (outcome.recorded), higher is better: Fisher's exact test on proportions
    when every outcome is 0 or 1 (a conversion), Welch's t-test on means otherwise (revenue)."""
    mine, theirs = candidate.outcomes.get(kpi, []), baseline.outcomes.get(kpi, [])
    n_c, n_b = len(mine), len(theirs)
    if min(n_c, n_b) < policy.min_labelled:
        return Finding(
            "inconclusive", f"{n_c} and {n_b} {kpi!r} outcomes; {policy.min_labelled} per arm needed"
        )
    if _binary(mine + theirs):
        test = "proportions"
        p = _fisher(int(sum(mine)), n_c, int(sum(theirs)), n_b, "two-sided")
    else:
        test = "means"
        welch = stats.ttest_ind(mine, theirs, equal_var=False)
        p = float(welch.pvalue) if np.isfinite(welch.pvalue) else 1.0
    c_val, b_val = float(np.mean(mine)), float(np.mean(theirs))

    def shown(value: float, values: list[float]) -> str:
        low, high = confidence_interval(values)
        return f"{value:.4g} [{_num(low)}, {_num(high)}]"

    numbers = (
        f"{kpi} {shown(c_val, mine)} (candidate, n={n_c}) against {shown(b_val, theirs)} "
        f"(baseline, n={n_b}), {test} test p={p:.3g}"
    )
    if p >= policy.alpha:
        return Finding("inconclusive", f"no significant difference yet: {numbers}", p)
    if c_val > b_val:
        return Finding("pass", f"candidate wins: {numbers}", p)
    return Finding("fail", f"baseline wins: {numbers}", p)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
