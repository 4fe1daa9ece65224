# leptonic — the two commands a new machine needs:
#   make up     install into .venv and start the platform (http://127.0.0.1:8080)
#   make test   install into .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DATA_DIR ?= $(HOME)/.leptonic
PORT   ?= 8080
PYTEST_ARGS ?=

.PHONY: up install test lint unit integration e2e bench clean sysdeps docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,ml,ray,sim,docs]'
	touch $(STAMP)

# The dashboard's front-end packages (htmx, uPlot) come from npm, pinned by the lock file;
# `npm run build` copies their release files into leptonic/web/static/vendor/ (not committed).
WEB       = leptonic/web
WEB_STAMP = $(WEB)/static/vendor/.built

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json $(WEB)/build.mjs
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to build the dashboard's" \
	  "front-end assets (htmx, uPlot); install Node.js and npm, then run make again" >&2; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error \
	  && npm run --silent build
	touch $@

install: $(STAMP) $(WEB_STAMP)

# Debian packages the browser (chromium) and Prometheus tests need; installed when missing.
sysdeps:
	@.ci/sysdeps.sh

# bubblewrap: the sandbox photons run in (installed when missing and root/sudo allows)
up: install
	@.ci/sysdeps.sh run
	$(BIN)/leptonic up --data-dir $(DATA_DIR) --port $(PORT)

lint: install
	$(BIN)/ruff check leptonic tests benchmarks examples tools
	$(BIN)/mypy leptonic

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or reference fails;
# the CLI and REST references are generated from the code at build time (tools/docs_hooks.py)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The integration suite also runs on a real PostgreSQL: .ci/postgres.sh installs and starts
# one where it can (root or sudo); elsewhere those tests are skipped, unless
# LEPTONIC_REQUIRE_SYSTEM_DEPS=1 (CI) makes a missing server a failure.
test: lint docs sysdeps
	LEPTONIC_TEST_POSTGRES_URL=$${LEPTONIC_TEST_POSTGRES_URL:-$$(.ci/postgres.sh 2>/dev/null || true)} \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	LEPTONIC_TEST_POSTGRES_URL=$${LEPTONIC_TEST_POSTGRES_URL:-$$(.ci/postgres.sh 2>/dev/null || true)} \
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

e2e: install sysdeps
	LEPTONIC_TEST_POSTGRES_URL=$${LEPTONIC_TEST_POSTGRES_URL:-$$(.ci/postgres.sh 2>/dev/null || true)} \
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/gateway.py

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(WEB)/node_modules $(WEB)/static/vendor
