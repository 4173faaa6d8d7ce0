# Every target sets itself up: a fresh clone needs nothing but python3.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# the tiny checkpoints where the bare `spotdiff` command looks too (spotdiff.settings.default_tiny_dir)
TINY_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/spotdiff/tiny
# every reference model at full size with random weights (about 21 GB), for test-full and bench-gpu
FULL_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/spotdiff/full
OUT ?= out/run
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export SPOTDIFF_TINY_DIR := $(TINY_DIR)
export SPOTDIFF_FULL_DIR := $(FULL_DIR)

.PHONY: run test test-full bench bench-scale bench-gpu lint mutation models full-size-models venv chromium checkov compose-test clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/pip install --quiet --no-cache-dir -e '.[models,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

$(TINY_DIR)/COMPLETE: $(STAMP)
	$(BIN)/spotdiff models tiny --out $(TINY_DIR)

models: $(TINY_DIR)/COMPLETE

$(FULL_DIR)/COMPLETE: | $(STAMP)
	$(BIN)/spotdiff models full-size --out $(FULL_DIR)

full-size-models: $(FULL_DIR)/COMPLETE

run: models
	$(BIN)/spotdiff run examples/caption_pairs.jsonl --out $(OUT) --profile tiny

# the browser tests drive the system Chromium; Playwright never downloads one
chromium:
	@test -x /usr/bin/chromium || \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# the Kubernetes policy checker, in a venv of its own (its pins are not the project's)
CHECKOV := .cache/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .cache/checkov
	.cache/checkov/bin/pip install --quiet --no-cache-dir checkov==3.3.30

checkov: $(CHECKOV)

test: models chromium checkov
	$(BIN)/python -m pytest

# the reference profile on full-size random weights, each service a real process (opt-in; about 15 minutes here)
test-full: full-size-models
	$(BIN)/python -m pytest -m slow tests/full

# the CPU stack in Docker for real: build, then under each Compose found (v2, fetched by docker/compose-v2.sh
# where no plugin answers, and 1.29): start, one job, its LLaVA export, down (6-10 minutes here)
compose-test: venv
	[ -n "$$SPOTDIFF_COMPOSE" ] || docker compose version >/dev/null 2>&1 || docker/compose-v2.sh >/dev/null
	$(BIN)/python docker/compose_test.py

# the decisions, the pipeline, the exports, the store, the ids and the caption stage mutated ([tool.mutmut] in
# pyproject.toml): fails if a mutant survives its tests; an equivalent mutant's line says why with
# `# pragma: no mutate` (about 8 minutes here)
mutation: models
	rm -rf mutants
	$(BIN)/mutmut run --max-children $$(nproc)
	@! $(BIN)/mutmut results | grep -v ': timeout$$'  # a mutant that hangs its tests is caught

bench: models
	$(BIN)/python -m bench

# one GPU, full-size models, fp16: P2P overhead, throughput, memory, a co-located pair, readiness (15 minutes)
bench-gpu: full-size-models
	$(BIN)/python -m bench.gpu

# one job of 10,000 pairs through the gateway, Celery and Redis (stand-in services; about 15 minutes here)
bench-scale: venv
	$(BIN)/python -m bench.scale

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy spotdiff httpkit services workers gateway

clean:
	rm -rf $(VENV) .cache out
