"""Per-model monitoring configuration: every threshold and window size, with defaults.

Operators override any field per model (``PUT /v1/models/{name}/config``); unset fields fall
back to the service defaults. The statistics modules take plain dataclasses; this module turns
one model's config into them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fleet_core.events import KPI_NAME_PATTERN
from fleet_core.schemas import Contract
from fleet_monitor.analysis import AnalysisPolicy
from fleet_monitor.anomaly import AnomalyThresholds
from fleet_monitor.drift import DriftThresholds
from fleet_monitor.performance import ConceptThresholds


class ModelConfig(Contract):
    """Monitoring thresholds of one model. Every field is optional; unset means the default."""

    drift_psi: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="PSI at or above which a feature has shifted (default 0.2)"
    )
    drift_alpha: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None, description="Family-wise significance of the KS / chi-square tests (default 0.01)"
    )
    drift_window_rows: Annotated[int, Field(ge=20, le=100_000)] | None = Field(
        default=None, description="Rows per drift window (default 500)"
    )
    drift_window_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="A drift window also closes after this long with enough rows (default 300)"
    )
    drift_min_rows: Annotated[int, Field(ge=10, le=100_000)] | None = Field(
        default=None, description="Fewest rows a time-closed drift window is scored on (default 100)"
    )
    drift_clear_windows: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Clean windows in a row that end a drift episode (default 2)"
    )
    concept_window_rows: Annotated[int, Field(ge=20, le=100_000)] | None = Field(
        default=None, description="Labelled rows per performance window (default 200)"
    )
    concept_accuracy_drop: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None,
        description="Drop of accuracy/F1 below the registered value that is concept drift (0.05)",
    )
    concept_error_increase: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Relative rise of MAE/RMSE above the registered value (default 0.25)"
    )
    anomaly_k: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Robust deviations from the baseline that are anomalous (default 5)"
    )
    anomaly_latency_floor_ms: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Latency must also rise this many ms above the baseline (default 10)"
    )
    analysis_min_requests: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Requests a canary arm needs before a verdict (default 50)"
    )
    analysis_max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="How much worse the canary's error rate may be (default 0.02)"
    )
    analysis_max_latency_ratio: Annotated[float, Field(ge=1)] | None = Field(
        default=None, description="Canary p95 may be this many times the baseline's (default 1.5)"
    )
    analysis_kpi: Annotated[str, Field(pattern=KPI_NAME_PATTERN)] | None = Field(
        default=None,
        description="A/B KPI when the rollout names none (default by task): accuracy, error_rate, mae, "
        "or a business KPI posted as outcome.recorded (conversion, revenue)",
    )
    analysis_alpha: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None, description="Significance level of the A/B test (default 0.05)"
    )

    def merged(self, other: ModelConfig) -> ModelConfig:
        """This config with ``other``'s set fields on top."""
        return self.model_copy(update=other.model_dump(exclude_none=True))

    def drift(self) -> DriftThresholds:
        d = DriftThresholds()
        return DriftThresholds(
            psi=self.drift_psi or d.psi,
            alpha=self.drift_alpha or d.alpha,
            window_rows=self.drift_window_rows or d.window_rows,
            window_s=self.drift_window_s or d.window_s,
            min_rows=min(self.drift_min_rows or d.min_rows, self.drift_window_rows or d.window_rows),
            clear_windows=self.drift_clear_windows or d.clear_windows,
        )

    def concept(self) -> ConceptThresholds:
        d = ConceptThresholds()
        return ConceptThresholds(
            window_rows=self.concept_window_rows or d.window_rows,
            accuracy_drop=self.concept_accuracy_drop or d.accuracy_drop,
            error_increase=self.concept_error_increase or d.error_increase,
        )

    def anomaly(self, base: AnomalyThresholds) -> AnomalyThresholds:
        return AnomalyThresholds(
            k=self.anomaly_k or base.k,
            warmup_buckets=base.warmup_buckets,
            baseline_buckets=base.baseline_buckets,
            fire_after=base.fire_after,
            resolve_after=base.resolve_after,
            min_requests=base.min_requests,
            latency_floor_ms=base.latency_floor_ms
            if self.anomaly_latency_floor_ms is None
            else self.anomaly_latency_floor_ms,
        )

    def analysis(self) -> AnalysisPolicy:
        d = AnalysisPolicy()
        return AnalysisPolicy(
            min_requests=self.analysis_min_requests or d.min_requests,
            max_error_rate_increase=d.max_error_rate_increase
            if self.analysis_max_error_rate_increase is None
            else self.analysis_max_error_rate_increase,
            max_latency_ratio=self.analysis_max_latency_ratio or d.max_latency_ratio,
            alpha=self.analysis_alpha or d.alpha,
        )
