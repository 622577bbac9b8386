# Two set-up commands for a fresh machine (Python 3.11 and make are all it needs):
#   make run    install into .venv and serve the shipped model on 127.0.0.1:8000
#   make test   install into .venv with dev tools and the training extra, run the whole test suite
# and, for development, `make test-fast`: all but the tests that need PostgreSQL, Chromium or
# another process, and the slow ones.
PYTHON ?= python3.11
VENV ?= .venv
TF ?= cpu
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test test-fast lint format clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when the project's own install files change.
$(VENV)/.stamp-$(TF): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[$(TF)]'
	@touch $@

$(VENV)/.stamp-dev-$(TF): pyproject.toml $(VENV)/.stamp-$(TF)
	$(PIP) install --quiet -e '.[$(TF),dev,train]'
	@touch $@

run: $(VENV)/.stamp-$(TF)
	$(PY) -m app

test: $(VENV)/.stamp-dev-$(TF)
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast loop: leaves out the tests marked as needing PostgreSQL, Chromium, the service as
# a process or another program, and the slow ones (markers: pyproject.toml, tests/conftest.py).
FAST_TESTS := not postgres and not browser and not live_service and not subprocess and not slow

test-fast: $(VENV)/.stamp-dev-$(TF)
	$(PY) -m pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

lint: $(VENV)/.stamp-dev-$(TF)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.stamp-dev-$(TF)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Delivery helpers (optional; the README's two set-up commands are `make run` and `make test`).
.PHONY: smoke docker-lint ci
BASE_URL ?= http://127.0.0.1:8000

smoke:  ## the README walk-through against a running service (BASE_URL=...)
	scripts/smoke.sh $(BASE_URL)

docker-lint: $(VENV)/.stamp-dev-$(TF)
	$(VENV)/bin/hadolint Dockerfile

ci:  ## what CI runs: tests, lint, then the smoke test against a fresh service
	.ci/run
