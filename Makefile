# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install everything they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast lint bench clean worker

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; (3, 11) <= v < (3, 15) or sys.exit("Python 3.11 to 3.14 is needed (what the pinned set, Dagster 1.13.27 and its dependencies, supports); found " + sys.version.split()[0] + ". Run make PYTHON=python3.X")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python scripts/check_install.py
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The Workflows page (web/): Debian's Chromium for its browser tests (never a downloaded
# browser), the app's npm packages when the lock file is newer than node_modules, and its
# build when a source is newer than web/dist.
.PHONY: web-page
install demo test test-fast: web-page
web-page: /usr/bin/chromium web/dist/index.html

/usr/bin/chromium:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund
	touch $@

web/dist/index.html: web/node_modules/.package-lock.json web/index.html web/vite.config.js $(shell find web/src -type f 2>/dev/null)
	npm run build --prefix web

demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(ARGS)

# Every gate, exactly as CI runs it: lint, format, the import contract, types, tests.
# Two test processes (the machine's two cores); a module's tests stay in one process,
# so each module starts its Dagster stack once. The schemathesis module runs on its
# own: under pytest-xdist its per-operation tests collapse into one.
PYTEST := $(BIN)/python -m pytest -q
PARALLEL := -n 2 --dist loadfile --ignore=tests/test_openapi.py

test: lint
	$(PYTEST) $(PARALLEL) $(ARGS)
	$(PYTEST) tests/test_openapi.py $(ARGS)

# The same without the tests that start a real dagster-webserver and daemon (marker `stack`).
test-fast: lint
	$(PYTEST) $(PARALLEL) -m "not stack" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# A run worker host of the celery profile (RUN_LAUNCHER=celery, CELERY_BROKER_URL,
# DAGSTER_PG_URL); WORKER_CONCURRENCY runs at once (default 3 per core).
worker: $(STAMP)
	RUN_LAUNCHER=celery $(BIN)/wf-worker $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_overhead.py

clean:
	rm -rf .dagster_home .media
