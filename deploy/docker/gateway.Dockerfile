# syntax=docker/dockerfile:1
# ModelFleet gateway (:8000). Build context: the repository root.
#   docker build -f deploy/docker/gateway.Dockerfile -t modelfleet/gateway:$(git rev-parse --short HEAD) .
# Every image shares PYTHON_IMAGE and UV_IMAGE; release builds pass them pinned by digest (README.md).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /uvx /bin/
# Bytecode compiled and files copied (not linked from the cache), so /opt/venv stands alone.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
# --frozen: exactly uv.lock's versions and hashes; --no-editable: workspace members become wheels
# inside the venv, so the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package fleet-gateway

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/modelfleet/modelfleet
LABEL org.opencontainers.image.title="modelfleet-gateway" \
      org.opencontainers.image.description="ModelFleet gateway: Open Inference Protocol v2 over Ray Serve handles (a Ray driver)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"
# uid 1000 numerically, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 1000 fleet \
    && useradd --uid 1000 --gid 1000 --home-dir /var/lib/fleet --no-create-home --shell /usr/sbin/nologin fleet \
    && install -d -o 1000 -g 1000 /var/lib/fleet
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FLEET_MODE=production FLEET_HOME=/var/lib/fleet FLEET_HOST=0.0.0.0 FLEET_PORT=8000 FLEET_GRPC_PORT=8081
USER 1000:1000
WORKDIR /var/lib/fleet
# HTTP, and the Open Inference Protocol over gRPC.
EXPOSE 8000 8081
# slim has no curl; the healthcheck follows FLEET_PORT if it is overridden.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['FLEET_PORT'], timeout=4)"]
# A Ray driver must run on a Ray node: with FLEET_RAY_JOIN=<head>:6379 this starts a 0-CPU node
# joined to the cluster beside the service; without it, it just runs the command.
ENTRYPOINT ["python", "-m", "fleet_core.raynode", "--"]
CMD ["python", "-m", "fleet_gateway", "serve"]
