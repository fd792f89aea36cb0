# Set-up and the two entry points of the README's first screen.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: venv install dev demo test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)

install: $(BIN)/python
	$(BIN)/pip install -q -e . "$(TORCH)"

dev: $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,flower]" "$(TORCH)"
	# peers for the bring-your-own-model and interop tests (tqdm, loguru: imported by
	# SpikingJelly; requests comes with flwr);
	# --no-deps so they cannot replace torch
	$(BIN)/pip install -q --no-deps snntorch spikingjelly tqdm loguru

demo: install
	$(BIN)/spikefed run

test: dev
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
