# syntax=docker/dockerfile:1
# ModelFleet Ray node (head or worker): the serving engine and the model runtimes that the pool and
# dedicated replicas load (scikit-learn/skops, onnxruntime), plus fleet-retrainer, whose training
# functions run here as Ray tasks. Build context: the repository root.
#   docker build -f deploy/docker/ray.Dockerfile -t modelfleet/ray:$(git rev-parse --short HEAD) .
# Drivers (deployer, gateway, retrainer) and this cluster must run the same Python and Ray: they share
# PYTHON_IMAGE and uv.lock, so never bump one image's base alone.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package fleet-serving --package fleet-retrainer

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/modelfleet/modelfleet
LABEL org.opencontainers.image.title="modelfleet-ray" \
      org.opencontainers.image.description="ModelFleet Ray node: Ray Serve, model runtimes, training tasks" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"
# KubeRay's default liveness/readiness probes exec wget.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget=1.21.3-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
# uid 1000 and user `ray` follow KubeRay's convention. KubeRay starts nodes through `bash -lc`, and a
# login shell resets PATH from /etc/profile: profile.d puts the venv (and `ray`) back in front.
# SC2016: ${PATH} must expand at login, not now.
# hadolint ignore=SC2016
RUN groupadd --gid 1000 ray \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/ray --shell /bin/bash ray \
    && install -d -o 1000 -g 1000 /var/lib/fleet \
    && echo 'export PATH="/opt/venv/bin:${PATH}"' > /etc/profile.d/modelfleet-venv.sh
COPY --from=builder /opt/venv /opt/venv
# FLEET_HOME matches the service images: the deployer hands its own FLEET_HOME to replicas. Serve's
# "direct ingress" (on with RAY_SERVE_THROUGHPUT_OPTIMIZED) would force a proxy onto the head only.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FLEET_MODE=production FLEET_HOME=/var/lib/fleet RAY_USAGE_STATS_ENABLED=0 \
    RAY_SERVE_ENABLE_DIRECT_INGRESS=0
USER 1000:1000
WORKDIR /home/ray
# GCS, dashboard (KubeRay's RayService talks to Serve's REST API there), client, dashboard agent, metrics.
EXPOSE 6379 8265 10001 52365 8080
# The dashboard agent runs on every node, head or worker; its raylet health is the node's health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["wget", "-q", "-T", "4", "-O", "/dev/null", "http://127.0.0.1:52365/api/local_raylet_healthz"]
CMD ["ray", "start", "--head", "--block", "--port=6379", "--dashboard-host=0.0.0.0", "--dashboard-port=8265", \
     "--ray-client-server-port=10001", "--dashboard-agent-listen-port=52365", "--metrics-export-port=8080", \
     "--disable-usage-stats"]
