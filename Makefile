# Two commands for a newcomer: `make demo` and `make test`. Both build .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-superoffice test test-interop lint typecheck check bench docs docs-strict clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sync.demo

# The same loop with SuperOffice (the stand-in) in place of the JSON import (docs/how-to/superoffice.md).
demo-superoffice: $(STAMP)
	$(BIN)/python -m sync.demo.superoffice

# Two workers (pytest-xdist), each with its own servers, databases and temporary files:
# 7.6 minutes instead of 14.7 on a 2-core machine. TEST_JOBS=0 runs in one process.
TEST_JOBS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS)

# The interoperability tier: the integration suites against Radicale, Xandikos, DAViCal,
# SOGo, Cyrus and SabreDAV (Debian packages; the script installs them if missing, which
# needs root).
INTEROP_SERVERS ?= radicale,xandikos,davical,sogo,cyrus,sabredav
test-interop: $(STAMP)
	scripts/install-debian-tier.sh
	FOLLOWUP_SYNC_SERVERS=$(INTEROP_SERVERS) $(BIN)/python -m pytest -q tests/integration tests/sync/stores/test_store_contract.py

# The documentation site, into site/. The CLI, config and HTTP API references are generated
# from the code at build time (mkdocs-click, scripts/docs_hooks.py). NO_MKDOCS_2_WARNING
# silences Material's end-of-life banner, which is not about this build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build

# What CI runs: any warning (a broken link, a page missing from the nav) fails the build.
docs-strict: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check mappings sync tests benchmarks scripts
	$(BIN)/ruff format --check mappings sync tests benchmarks scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# N series per server (1000: a quick run; 5000 for the README figures). vdirsyncer, the
# peer we compare with, lives in its own venv so its dependencies never mix with ours.
N ?= 1000
bench: $(STAMP)
	test -x .bench-venv/bin/vdirsyncer || \
		($(PYTHON) -m venv .bench-venv && .bench-venv/bin/pip install --quiet vdirsyncer)
	$(BIN)/python -m benchmarks.run --n $(N)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
