# embryo_xai — `make run` (the main job) and `make test` are all a new user types.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: install run test test-slow lint bench device-check clean help

help:
	@echo "make install  - create .venv and install embryo_xai with dev extras"
	@echo "make run      - the main job on the embedded synthetic data set"
	@echo "make test     - default test suite (fast, CPU)"
	@echo "make test-slow- slow end-to-end tests"
	@echo "make lint     - ruff"
	@echo "make bench    - benchmarks (tables printed, JSON/CSV in bench_results/)"
	@echo "make device-check - GPU check, <= 8 min on one CUDA GPU (bench_results/device_check.json)"
	@echo "make clean    - remove outputs, caches and the venv"

install: $(STAMP)

# Re-installs only when the project metadata changes, so a second `make install` is instant.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/python -m embryo_xai.main study=demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks

device-check: install
	timeout 540 $(BIN)/python -m benchmarks.device_check

clean:
	rm -rf outputs multirun bench_results .pytest_cache .ruff_cache $(VENV) *.egg-info
