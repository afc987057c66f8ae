# switchboard: `make run` starts the local stack, `make test` runs the whole suite.
# Both create the virtualenv under .venv and install what they need on first use: `make run`
# only the local stack (requirements-run.txt), everything else the test tools too
# (requirements-dev.txt, which includes it). --no-compile: pip would byte-compile all of
# botocore and moto at install (about 10 s here); Python compiles what it imports, once.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PYTEST_ARGS ?=

.PHONY: help run check test lint unit functional e2e clean browser-deps chalice-local

help:
	@echo "make run           start the local stack (DynamoDB, WebSocket gateway, HTTP routes, demo page)"
	@echo "make check         lint + every test that needs no socket and no browser (the fast tier)"
	@echo "make unit          tests/unit: the modules on fakes (a few talk to a scripted local server)"
	@echo "make functional    tests/functional: the handlers and services on moto, in process"
	@echo "make e2e           tests/e2e: the app on the local gateway, real sockets"
	@echo "make test          lint + the whole suite (what CI runs)"
	@echo "make soak          tests/reliability and the continuation soak at soak scale (about 20 min)"
	@echo "make lint          ruff and mypy only"
	@echo "make chalice-local chalice local (port 8002) against a running make run"
	@echo "make bench         quick benchmarks (bench-full: the long run)"
	@echo "make package STAGE=dev          the CloudFormation template + zip (docs/DEPLOY.md, path A)"
	@echo "make chalice-deploy STAGE=dev   table, queues, then chalice deploy (docs/DEPLOY.md, path B)"
	@echo "make clean         remove the virtualenv and caches"

$(RUN_STAMP): requirements.txt requirements-run.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements-run.txt
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd clients/python && ../../$(VENV)/bin/mypy

# Tiers (tests/tiers.py): a test that opens a socket is marked ``socket`` (tests/e2e, browser,
# reliability by their path); the rest run in process, on 2 workers (pytest-xdist), with
# --forbid-sockets failing any of them that opens one. The socket suites stay serial: on 2 cores,
# parallel gateways would race the timing of one another's scenarios.
JOBS        ?= 2
PARALLEL    := -n $(JOBS) --dist loadgroup
IN_PROCESS  := -m "not socket" --forbid-sockets

check: lint
	$(PY) -m pytest $(IN_PROCESS) $(PARALLEL) -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PARALLEL) -q $(PYTEST_ARGS)

functional: $(STAMP)
	$(PY) -m pytest tests/functional $(PARALLEL) -q $(PYTEST_ARGS)

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

# The whole suite: the in-process tier in parallel, then every socket test serially. Both run
# whatever the first's result; make test fails if either does.
test: lint browser-deps
	@status=0; \
	$(PY) -m pytest $(IN_PROCESS) $(PARALLEL) --durations=25 $(PYTEST_ARGS) || status=$$?; \
	$(PY) -m pytest -m socket --durations=25 $(PYTEST_ARGS) || status=$$?; \
	exit $$status

# Debian's chromium and chromedriver for tests/browser, installed with apt only when missing.
browser-deps:
	@bash tests/browser/install-chromium.sh

# Locally, identity comes from ?userId= (AUTH_MODE=none); override with RUN_ARGS=... / ARGS=...
# With AUTH_MODE=jwt (RUN_ARGS=), pass JWT_SECRET by file or environment, never on the command
# line: ARGS="--env-file .env.local" or ARGS="--env-from-environ JWT_SECRET"; JWT_ISSUER and
# JWT_AUDIENCE are required too (the same file, or --env JWT_ISSUER=... --env JWT_AUDIENCE=...).
RUN_ARGS ?= --auth-mode none

# .chalice/local.env: the app's environment while `make run` runs (for chalice local).
LOCAL_ENV := .chalice/local.env
CHALICE_PORT ?= 8002

# The embedded SQS queue (with its dead-letter queue, as deployed) carries fan-outs past their
# deadline: the app gets its URL in CONTINUATION_QUEUE_URL, and a random CONTINUATION_KEY to
# sign its jobs with (unless ARGS' env file sets one).
run: $(RUN_STAMP)
	$(PY) -m local_gateway --write-env-file $(LOCAL_ENV) --queue-url-env CONTINUATION_QUEUE_URL \
		--generate-secret CONTINUATION_KEY \
		$(RUN_ARGS) $(ARGS)

# Chalice's own `chalice local` against a running `make run` (its DynamoDB, gateway, auth mode
# and secret: .chalice/local.env wins over the stage's config.json variables).
chalice-local: $(RUN_STAMP)
	$(PY) -m local_gateway.chalice_local --env-file $(LOCAL_ENV) --port $(CHALICE_PORT) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# --- deploy (see README "Deploy") ----------------------------------------------------------
STAGE ?= dev

.PHONY: package create-table create-queue chalice-deploy

package: $(STAMP)
	$(PY) -m deploy.package --stage $(STAGE)

create-table: $(STAMP)
	$(PY) -m deploy.create_table --stage $(STAGE) $(ARGS)

# `chalice deploy` takes the functions' runtime from the Python it runs on, and Lambda can no
# longer create python3.11 functions: the chalice deploy path has its own virtualenv.
DEPLOY_PYTHON ?= python3.13
DEPLOY_VENV   ?= .venv-deploy
DEPLOY_STAMP  := $(DEPLOY_VENV)/.installed

$(DEPLOY_STAMP): requirements.txt
	@test -x $(DEPLOY_VENV)/bin/python || $(DEPLOY_PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.txt chalice==1.34.0 boto3==1.44.5
	@touch $(DEPLOY_STAMP)

# The stage's table, continuation queue and dead-letter queue (no chalice deploy).
create-queue: $(STAMP)
	$(PY) -m deploy.chalice_deploy --stage $(STAGE) --only-resources $(ARGS)

# Table and queues first (Chalice subscribes the worker to the queue), then chalice deploy.
chalice-deploy: $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/python -m deploy.chalice_deploy --stage $(STAGE) $(ARGS)

# --- benchmarks (see README "Performance") ---------------------------------------------------
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: bench bench-full

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $(BENCH_STAMP)

# Quick run (under 3 minutes): results in bench/results/quick.{json,md} and fanout.png.
bench: $(BENCH_STAMP)
	$(PY) -m bench $(ARGS)

# Larger run (up to 10,000 clients, 3 repetitions; about 15 minutes): bench/results/full.*
bench-full: $(BENCH_STAMP)
	$(PY) -m bench --full $(ARGS)

# --- reliability (see docs/RELIABILITY.md) -------------------------------------------------
# make test runs tests/reliability at small scale; soak runs it bigger (about 10 minutes).
.PHONY: soak

# Both parts run whatever the first one's result; soak fails if either does, and says which.
soak: $(STAMP)
	@reliability=0; continuation=0; \
	RELIABILITY_SCALE=soak $(PY) -m pytest tests/reliability -p no:cacheprovider $(PYTEST_ARGS) || reliability=$$?; \
	RELIABILITY_SCALE=soak $(PY) -m pytest tests/e2e/test_continuation.py -m soak -p no:cacheprovider $(PYTEST_ARGS) || continuation=$$?; \
	echo "make soak: tests/reliability exit $$reliability, continuation soak exit $$continuation"; \
	test $$reliability -eq 0 && test $$continuation -eq 0
