# Two commands matter: `make run` serves on :8000, `make test` runs the suite. Both set up .venv first
# (and, as root on Debian, the system packages they need: python3-venv, chromium for the browser tests).
# `make test-fast` is the quick loop: the suite without the tests marked slow (no server, browser, Docker).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: run test test-fast browser lint container-check bench load clean

$(BIN)/python:
	bash scripts/system-packages.sh venv $(PYTHON)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# Stamp files re-run the install only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[train,dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/face-landmarks serve --host $(HOST) --port $(PORT)

# Bytecode written even where PYTHONDONTWRITEBYTECODE is set: pytest then keeps the assertion-rewritten
# test and plugin modules (schemathesis alone is ~300) instead of rewriting them on every run (~4 s).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

test: $(VENV)/.installed-dev browser
	$(PYTEST) $(PYTEST_ARGS)

# One pytest worker per core (pytest-xdist): 58 s instead of 106 s on 2 idle cores.
test-fast: $(VENV)/.installed-dev
	$(PYTEST) -m "not slow" -n auto $(PYTEST_ARGS)

# Debian's chromium for tests/web (Playwright cannot download its own browser here).
browser:
	bash scripts/system-packages.sh chromium

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
	$(BIN)/python -m bench.video --write docs/PERFORMANCE.md

load: $(VENV)/.installed-dev
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
