# ModelFleet — the user-facing commands. Needs only Python 3.11+ and make; uv is installed if absent.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=

.PHONY: help uv install demo up down status test test-extended test-fast test-production check-deploy images lint format clean bench bench-quick bench-fleet bench-fleet-quick grpc-stubs

help:  ## List the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv

install: uv  ## Install every package and dev tool into .venv
	$(UV) sync --all-packages --frozen 2>/dev/null || $(UV) sync --all-packages

demo: install  ## Start the embedded stack and show the platform doing its job (Ctrl-C stops)
	$(UV) run fleet demo

up: install  ## Start the embedded stack in the foreground
	$(UV) run fleet up

down:  ## Stop a detached stack
	$(UV) run fleet down

status:  ## Health of the running stack
	$(UV) run fleet status

test: install  ## Lint, then run the test suite (unit, integration, end-to-end; not the fleet-scale runs)
	$(UV) run ruff check .
	$(UV) run pytest -m "not extended" --durations=15 $(PYTEST_ARGS)

test-extended: install  ## The minutes-long end-to-end runs make test leaves out (marker extended); CI runs them
	$(UV) run pytest -m extended --durations=5 $(PYTEST_ARGS)

test-production: install  ## Integration and end-to-end tests again, every service on PostgreSQL and S3
	FLEET_TEST_BACKEND=production $(UV) run pytest tests/integration tests/e2e $(PYTEST_ARGS)

check-deploy: install  ## Lint and validate Dockerfiles, docker-compose.yml, Kubernetes manifests, alerts
	$(UV) run pytest tests/unit/deploy $(PYTEST_ARGS)

images:  ## Build the six images with a content-addressed tag (needs a Docker engine)
	@tag=$$(deploy/docker/image-tag.sh) && revision=$$(git rev-parse HEAD) && \
	for image in registry deployer gateway monitor retrainer ray; do \
	  docker build -f deploy/docker/$$image.Dockerfile -t $${FLEET_IMAGE_REGISTRY:-modelfleet}/$$image:$$tag \
	    --build-arg REVISION=$$revision . || exit 1; \
	done && echo "FLEET_IMAGE_TAG=$$tag"

grpc-stubs: install  ## Regenerate the gateway's gRPC modules from its .proto (they are committed)
	$(UV) run python services/gateway/scripts/generate_grpc.py

test-fast: install  ## Unit tests only
	$(UV) run pytest -m "not integration and not e2e" $(PYTEST_ARGS)

bench: install  ## Serving, multi-model, monitor, HTTP-stack and gRPC-transport benchmarks (wrk and h2load when installed, else skipped with a note); results in bench/results/
	$(UV) run python bench/serving.py
	$(UV) run python bench/multimodel.py
	$(UV) run python bench/monitor.py
	$(UV) run python bench/http_stack.py
	$(UV) run python bench/grpc_transport.py

bench-fleet: install  ## 1,000 models from 20 teams: onboard, serve, measure (by hand, ~20 min)
	$(UV) run python bench/fleet.py

bench-fleet-quick: install  ## Smoke run of bench/fleet.py (100 models; CI runs it)
	$(UV) run python bench/fleet.py --quick

bench-quick: install  ## Smoke run of the benchmarks (3 s cells, 30 models)
	$(UV) run python bench/serving.py --quick
	$(UV) run python bench/multimodel.py --quick
	$(UV) run python bench/monitor.py --quick
	$(UV) run python bench/http_stack.py --quick
	$(UV) run python bench/grpc_transport.py --quick

lint: install  ## ruff
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format: install  ## Format the code
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

clean:  ## Remove caches (not ~/.fleet)
	rm -rf .pytest_cache .ruff_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
