# Two commands do all set-up on a fresh machine:
#   make demo   -> venv + deps + embedded model, then the main job on SmolLM2 + the local data
#   make test   -> venv + deps + embedded model, then the test suite
# Both are idempotent: a second run reuses the venv and the model cache.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAERL_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export SAERL_DATA_DIR
export HF_HUB_DISABLE_TELEMETRY = 1
export WANDB_MODE = disabled

.PHONY: setup demo test lint benchmarks clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	# torch first and pinned: this exact version is the CPU build on this machine's disk;
	# an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed
	$(BIN)/saerl-hf download-model smollm2-135m

demo: setup
	$(BIN)/saerl-hf demo

test: setup
	$(BIN)/python -m pytest tests -q -x --durations=15

benchmarks: setup
	$(BIN)/python benchmarks/run_all.py

lint: setup
	$(BIN)/ruff check saerl_hf tests benchmarks

clean-venv:
	rm -rf $(VENV)
