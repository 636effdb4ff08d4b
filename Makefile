# LINE campaign delivery on Apache Airflow. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/data/airflow
# Python and pytest may keep bytecode (__pycache__, ignored by git) of the project's modules and of the
# tests as pytest rewrites them: with PYTHONDONTWRITEBYTECODE set, as on these machines, every test
# worker rewrote about 190 test modules again (collection 8.9 -> 5.1 s a process) and every Airflow
# process compiled the plugins again.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-pg test-live chaos chaos-model demo airflow screenshots bench bench-push lint format requirements simulator wheel clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: every process (each test worker, each Airflow component and task process) then
# loads Airflow's modules from bytecode instead of compiling about 2,500 of them (about 1.2 s of CPU a
# process), from the first run on.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install the pinned requirements and the package

# make test spreads the suite over workers, each with its own AIRFLOW_HOME and metadata DB (tests/conftest.py);
# more workers than cores: many end-to-end tests wait on the simulator, Airflow or a quiet-hours window
TEST_WORKERS ?= 4
# The tests' files (each worker's AIRFLOW_HOME and metadata DB, SQLite delivery logs, chunk files) go to
# tmpfs where the machine has one: Airflow's metadata DB and the logs commit (fsync) after every task
# state change and every chunk, and on a disk those waits are part of every end-to-end test. Only with
# 2 GiB free there (a container's /dev/shm is often 64 MB); a run keeps about 150 MB of them at its end.
TEST_TMPDIR ?= $(shell [ -d /dev/shm ] && [ -w /dev/shm ] \
	&& [ "$$(df -Pk /dev/shm | awk 'NR == 2 {print $$4}')" -ge 2097152 ] 2>/dev/null \
	&& echo /dev/shm || echo "$${TMPDIR:-/tmp}")
TEST_ENV := TMPDIR=$(TEST_TMPDIR)
test: install ## Run the whole test suite (TEST_WORKERS=4 pytest-xdist workers; TEST_WORKERS=0 runs it in one process)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# test-fast's tests keep the CPU busy (none waits on an Airflow stack or a window): on 2 cores three workers
# beat four (side by side, 2026-12-07: 74.8 and 74.9 s against 91.2 and 83.9 s; two workers 85.0 and 79.4 s);
# on a faster machine later that day three, four and five read alike (41.3-43.4 s). It leaves the
# PostgreSQL variants (marker `postgres`) to `make test` and `make test-pg`: they were 94 of its tests and
# a third of its time (side by side, eighteenth session: 55.5 / 58.7 s with them, 35.1 / 37.1 s without).
FAST_WORKERS ?= 3
test-fast: install ## Run the suite without the slow, live and PostgreSQL tests, a fifth of the property tests' examples, the model checker at 10 sequences on the SQLite log (FAST_WORKERS=3)
	$(TEST_ENV) LINE_OA_FAST_TESTS=1 LINE_OA_MODEL_EXAMPLES=$${LINE_OA_MODEL_EXAMPLES:-10} $(BIN)/python -m pytest -n $(FAST_WORKERS) --dist loadgroup -m "not slow and not live and not postgres"

test-pg: install ## Run only the tests against the PostgreSQL server on 127.0.0.1:5432 (the delivery log, claims, insights)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m postgres

test-live: install ## Run only the live tests: Airflow's components as processes (Celery, PostgreSQL, Redis)
	$(TEST_ENV) $(BIN)/python -m pytest -m live

chaos: install ## Chaos run: 100,000 recipients through every fault at once, push task SIGKILLed mid-chunk
	LINE_OA_CHAOS_RECIPIENTS=$${LINE_OA_CHAOS_RECIPIENTS:-100000} $(BIN)/python -m pytest tests/reliability -m chaos --timeout=0

chaos-model: install ## Exactly-once model checker: 10,000 random fault sequences (5,000 per log: SQLite, PostgreSQL), prints the counts
	LINE_OA_MODEL_EXAMPLES=$${LINE_OA_MODEL_EXAMPLES:-5000} $(BIN)/python -m pytest tests/reliability/test_exactly_once_model.py -p no:cacheprovider --timeout=0

demo: install ## Deliver the demo campaign end to end (SQLite CDP, LINE simulator, real DAG run)
	$(BIN)/python -m line_oa.cli.demo

airflow: install ## Start the local Airflow stack for the UI (api-server, scheduler, dag-processor, triggerer, simulator, demo CDP); Ctrl-C stops it
	$(BIN)/python -m line_oa.cli.stack

screenshots: install ## Take the UI screenshots of docs/images with headless Chromium (the browser test)
	LINE_OA_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/live/test_ui_browser.py -p no:cacheprovider

bench: install ## Run the benchmarks and write docs/benchmarks.md
	$(BIN)/python -m benchmarks.run

bench-push: install ## Push-throughput benchmark of the delivery engine only
	$(BIN)/python -m benchmarks.run push

simulator: install ## Start the LINE simulator on 127.0.0.1:8099 (Ctrl-C stops it)
	$(BIN)/python -m line_simulator --host 127.0.0.1 --port 8099

lint: install ## ruff check, format check and the import contracts (lint-imports, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

requirements: | $(BIN)/uv ## Regenerate the fully pinned requirements.txt from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.txt --python-version 3.11

wheel: | $(BIN)/uv ## Build the wheel into dist/ (from a clean build/: no stale modules)
	rm -rf build
	$(BIN)/uv build --wheel -o dist

clean: ## Remove generated data and builds (keeps .venv)
	rm -rf data .pytest_cache build dist
