# HealthForce Integration — every task in one place. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: bootstrap
bootstrap: ## Create the virtualenv, install the project and the Node tools (idempotent)
	@./scripts/bootstrap.sh

.PHONY: services
services: bootstrap ## Make sure PostgreSQL and RabbitMQ run for the tests and promtool is installed (installs/starts them as root, or uses TEST_DATABASE_URL / TEST_BROKER_URL / PROMTOOL)
	@$(PY) -m harness.services up

.PHONY: bench-tools
bench-tools: bootstrap ## Install wrk, the benchmarks' load generator (Debian package, as root), when it is missing
	@$(PY) -m harness.services bench-tools

.PHONY: keycloak
keycloak: ## Fetch the pinned Keycloak server with Maven and unpack it under var/keycloak (idempotent)
	@./scripts/keycloak.sh >/dev/null

.PHONY: demo
demo: bootstrap ## The main job: bring the harness up on the embedded default and show it working (KEEP=1 leaves it running)
	@$(PY) -m harness.demo $(if $(filter 1 yes true,$(KEEP)),--keep)

.PHONY: test
# `services` first: it may apt-get install, as `keycloak` may (Maven), and apt-get does not wait
# for another's lock. Then the other three side by side, their output line by line as it comes
# (per target, a first Keycloak fetch and build said nothing for minutes).
# Three xdist workers on the 2 cores CI has: with two, the command's processes used 124 % of the
# 200 % (the tests wait on deliveries, kills, paced load, servers starting) and pytest took
# 9 min 49 s; with three, 6 min 35 s to 8 min 01 s in four clean runs (docs/benchmarks.md, "The
# test command"). TEST_WORKERS=N sets another count.
TEST_WORKERS ?= 3
test: services ## Run every test (unit, integration, contract, fuzz, e2e) — what CI runs
	@$(PY) -m harness.services packages
	@$(MAKE) --no-print-directory -j3 --output-sync=line keycloak lint typecheck
	@$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: bootstrap ## Only the Schemathesis runs, 100 examples per operation (make test runs 8)
	@HF_FUZZ_MAX_EXAMPLES=100 $(PY) -m pytest -p no:cacheprovider -n 2 --dist loadfile tests/fuzz $(PYTEST_ARGS)

.PHONY: conformance
conformance: bootstrap ## hf-conformance against both mocks, peers and webhooks included (reports/conformance/)
	@$(PY) -m harness.conformance_run

.PHONY: pacts
pacts: bootstrap ## Regenerate contracts/pacts/ from the consumer tests, then verify them against the mocks
	@HF_PACT_WRITE=1 $(PY) -m pytest -p no:cacheprovider tests/contract/test_pact_files.py $(PYTEST_ARGS)
	@$(PY) -m pytest -p no:cacheprovider tests/contract $(PYTEST_ARGS)

.PHONY: e2e
e2e: bootstrap keycloak ## Only the end-to-end suite: the whole stack over HTTPS, the data-flow scenarios (docs/e2e.md)
	@$(PY) -m harness.services packages
	@$(PY) -m pytest -p no:cacheprovider e2e $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: bootstrap ## Only the unit tests (no servers)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: bootstrap ## ruff lint and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

.PHONY: format
format: bootstrap ## Apply ruff formatting and safe fixes
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

.PHONY: typecheck
typecheck: bootstrap ## mypy --strict on the packages
	@$(VENV)/bin/mypy

.PHONY: mock-kki
mock-kki: bootstrap ## Start the KKI mock on :8081 (SIZE=1000 SEED=42)
	@$(VENV)/bin/hf-mock kki --port 8081 --size $${SIZE:-1000} --seed $${SEED:-42}

.PHONY: mock-sisdmk
mock-sisdmk: bootstrap ## Start the SISDMK mock on :8082 (SIZE=1000 SEED=42)
	@$(VENV)/bin/hf-mock sisdmk --port 8082 --size $${SIZE:-1000} --seed $${SEED:-42}

.PHONY: bench
bench: bootstrap services keycloak ## Every benchmark against its baseline, one report: reports/bench.md + bench.json (BENCH_ARGS=--quick for a short check)
	@# wrk when it can be installed; without it the benchmarks that need it say so and the rest run
	-@$(PY) -m harness.services bench-tools
	@$(PY) bench/run_all.py $(BENCH_ARGS)

.PHONY: bench-mocks
bench-mocks: bootstrap bench-tools ## Benchmark both mocks at N=100,000 against Prism (writes reports/bench-mocks.json)
	@$(PY) bench/bench_mocks.py

.PHONY: bench-sync
bench-sync: bootstrap services ## Full sync into PostgreSQL at N=10,000 and 100,000 vs COPY (writes reports/bench-sync.json)
	@$(PY) bench/bench_sync.py --systems sisdmk kki

.PHONY: bench-webhooks
bench-webhooks: bootstrap services bench-tools ## Webhooks under gunicorn vs a bare endpoint, lag, fault run (writes reports/bench-webhooks.json)
	@$(PY) bench/bench_webhooks.py

.PHONY: bench-api
bench-api: bootstrap services bench-tools ## Authenticated GET /api/v1/health-workers/{id} vs a bare endpoint under gunicorn (writes reports/bench-api.json)
	@$(PY) bench/bench_api.py

.PHONY: bench-startup
bench-startup: bootstrap ## CPU of a command's process start, the project's way vs imported with the collector running (writes reports/bench-startup.json)
	@$(PY) bench/bench_startup.py

# Load runs (docs/load.md): a local stack unless LOAD_HOST is set (then LOAD_DATABASE_URL and the
# LOAD_… variables describe the target); LOAD_RUN_ARGS passes other `load.run` options (--prefill,
# --serve-workers …). Each run writes reports/load/<time>/report.{md,json,png}.
USERS ?= 50
SPAWN_RATE ?= 10
DURATION ?= 60
WORKERS ?= 2
SIZE ?= 1000
LOAD_HOST ?=
LOAD_RUN_ARGS ?=
# Against another adapter only the load tool is needed: no local PostgreSQL, RabbitMQ or Keycloak.
LOAD_STACK = $(if $(LOAD_HOST),,services keycloak)
LOAD_ARGS = --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) --size $(SIZE) $(if $(LOAD_HOST),--host $(LOAD_HOST)) $(LOAD_RUN_ARGS)

.PHONY: load
load: bootstrap $(LOAD_STACK) ## Locust load run, standalone (USERS=50 SPAWN_RATE=10 DURATION=60 SIZE=1000 LOAD_HOST=)
	@$(PY) -m load.run $(LOAD_ARGS)

.PHONY: load-distributed
load-distributed: bootstrap $(LOAD_STACK) ## Locust load run, one master and WORKERS=2 worker processes (same parameters)
	@$(PY) -m load.run $(LOAD_ARGS) --workers $(WORKERS)

.PHONY: clean
clean: ## Remove caches and generated reports (keeps the virtualenv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports var .hypothesis
