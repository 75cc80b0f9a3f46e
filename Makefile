# etf-sync: every target that needs Python builds .venv first, so a fresh clone
# needs nothing but Python 3.11+ and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
ETL := $(BIN)/etl
DEMO_PORT ?= 8787
# FLAGS go before the command (e.g. FLAGS="--json -q"), ARGS after it (e.g. ARGS="--exchange XSHG").
# Every recipe line is silent (@): with FLAGS=--json, stdout carries etl's JSON alone.
# make reports any failing recipe as exit 2; cron should call scripts/cron-sync-etf.sh,
# which passes etl's own exit code on.

.DEFAULT_GOAL := help
.PHONY: help sync-etf sync-list sync-prices migrate status test lint format bench demo fake-api clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The runtime alone (what a server needs); the dev tools come only with test/lint/bench.
# pip's chatter goes to stderr so that stdout stays etl's.
$(RUNTIME): pyproject.toml
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/pip install --quiet --upgrade pip >&2
	@$(BIN)/pip install --quiet -e . >&2
	@touch $@

$(STAMP): $(RUNTIME)
	@$(BIN)/pip install --quiet -e '.[dev]' >&2
	@touch $@

sync-etf: $(RUNTIME) ## Sync ETF lists and daily prices (TSANGHI_TOKEN; DATABASE_URL or embedded)
	@$(ETL) $(FLAGS) sync $(ARGS)

sync-list: $(RUNTIME) ## Sync only the ETF lists of both exchanges
	@$(ETL) $(FLAGS) sync-list $(ARGS)

sync-prices: $(RUNTIME) ## Sync only daily prices of the active ETFs
	@$(ETL) $(FLAGS) sync-prices $(ARGS)

migrate: $(RUNTIME) ## Create or upgrade the schema (one line per applied file)
	@$(ETL) migrate

status: $(RUNTIME) ## ETF counts, freshness and recent runs
	@$(ETL) status

test: $(STAMP) ## Run the test suite (embedded PostgreSQL 18, and the system PostgreSQL if present)
	@$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

bench: $(STAMP) ## Benchmarks on the full synthetic universe (see README)
	@$(BIN)/python scripts/bench.py $(ARGS)

fake-api: $(RUNTIME) ## Serve the local Tsanghi-compatible test API (port 8787, or DEMO_PORT=...)
	@PYTHONPATH=tests $(BIN)/python -m fakeapi --port $(DEMO_PORT)

demo: $(RUNTIME) ## Offline tour: local test API, a full sync into the embedded database, status
	@bash scripts/demo.sh

clean: ## Remove the virtual environment (data/ is kept)
	@rm -rf $(VENV) build *.egg-info
