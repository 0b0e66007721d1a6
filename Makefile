# Two commands matter: `make run` serves on :8000, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: run test lint container-check bench load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files re-run the install only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[train,dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/face-landmarks serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app training tests bench
	$(BIN)/ruff format --check app training tests bench

container-check: $(VENV)/.installed-dev
	bash scripts/container-check.sh

# Prints the figures and stores them in docs/PERFORMANCE.md (run it on an otherwise idle machine):
# the request path against raw dlib, then faces found and detection time under each upsample policy.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.run --write docs/PERFORMANCE.md
	$(BIN)/python -m bench.detection --write docs/PERFORMANCE.md

load: $(VENV)/.installed-dev
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
