# make help lists the targets. Everything runs in .venv, made by `make setup`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: help setup setup-ray sweep test test-slow test-all test-gpu bench bench-old lint format golden clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## make .venv with the pinned working set (1-2 min; the TF wheel is 572 MB)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,slurm]' --config-settings editable_mode=compat
	touch $@

setup-ray: $(RAY_STAMP) ## add the Ray launcher to .venv (sweeper[ray]: ray and its dependencies)

$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,slurm,ray]' --config-settings editable_mode=compat
	touch $@

sweep: setup ## the default sweep: bert-base, PyTorch, CPU, batch 8, seq 8/32/128/512
	$(BIN)/python -m sweeper -m

test: setup ## the test suite (fast and end-to-end tests; not the slow ones)
	$(BIN)/python -m pytest

test-slow: setup-ray ## the slow end-to-end tests only (the Ray launcher's among them)
	$(BIN)/python -m pytest -m slow

test-all: setup-ray ## every CPU test
	$(BIN)/python -m pytest -m 'not gpu'

test-gpu: setup ## the GPU tests (needs a CUDA GPU and CUDA builds of torch/TF)
	$(BIN)/python -m pytest -m gpu

bench: setup ## the seed's bert-base sweep in both frameworks, with wall times
	$(BIN)/python bench/seed_sweep.py

bench-old: setup ## the same, each framework followed by transformers 4.48.3's old benchmark
	$(BIN)/python bench/seed_sweep.py --old

lint: setup ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## ruff format and the fixable ruff checks
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

golden: setup ## rewrite tests/data/golden_expected after a deliberate format change
	$(BIN)/python -m tests.regen_golden

clean: ## remove .venv and caches (outputs/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build dist
