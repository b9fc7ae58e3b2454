"""Prometheus metrics for a service: HTTP request counters and latency, plus `/metrics`.

Each app owns its ``CollectorRegistry`` so several apps can live in one test process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)


class ServiceMetrics:
    """The registry and HTTP instruments of one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fleet_http_requests",
            "HTTP requests",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fleet_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            start = time.perf_counter()
            response = await call_next(request)
            # Label by route template, not raw path, to keep cardinality bounded.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.requests.labels(self.service, request.method, route, str(response.status_code)).inc()
            self.latency.labels(self.service, route).observe(time.perf_counter() - start)
            return response

        @app.get("/metrics", include_in_schema=False)
        async def _metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
