# tap-custobar: `make demo` (first try), `make test` (lint, the whole suite, then the sync tests on
# the SDK's standard path), `make lint`, `make install`, `make readme` (settings table from --about).
#
# Two virtualenvs so that Meltano's dependencies can never clash with the tap's:
#   .venv          the project, editable, with its test extra (pytest, psycopg)
#   .meltano-venv  meltano itself; `meltano install` then builds each plugin's own venv
#                  under .meltano/ (the tap editable from this folder).

PYTHON ?= python3
MELTANO_VERSION := 4.4.1
VENV := .venv
MELTANO_VENV := .meltano-venv
MELTANO := $(MELTANO_VENV)/bin/meltano

.PHONY: install demo lint test readme bench bench-pipeline

install: $(VENV)/.installed $(MELTANO_VENV)/.installed-$(MELTANO_VERSION)
	$(MELTANO) install

# Re-run pip only when pyproject.toml changed since the last install (or the venv is new).
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The stamp names the version: changing MELTANO_VERSION reinstalls.
$(MELTANO_VENV)/.installed-$(MELTANO_VERSION):
	test -x $(MELTANO_VENV)/bin/python || $(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'meltano==$(MELTANO_VERSION)'
	touch $@

# Sandbox -> tap-custobar -> target-jsonl; prints what landed under output/.
demo: install
	bash scripts/demo.sh

# Lint and type checks, as configured in pyproject.toml (not pytest tests: a style slip is not a
# behaviour failure, and mypy alone takes longer than most test files).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tap_custobar tests benchmarks scripts
	$(VENV)/bin/ruff format --check tap_custobar
	$(VENV)/bin/mypy tap_custobar

# Lint, the suite, then the in-process sync tests again as on a singer-sdk version the
# page-at-a-time record path was not verified against, so that the SDK's standard path stays
# proven too.
PAGE_PATH_OFF_TESTS := tests/test_core.py tests/test_incremental.py tests/test_faults.py \
	tests/test_custom_fields.py
PAGE_PATH_OFF_SELECTION := (test_core or test_incremental or api_variations or order_ignored \
	or test_custom_fields) \
	and not command_line and not killed_run and not config_file

test: install lint
	$(VENV)/bin/python -m pytest
	$(VENV)/bin/python -m pytest --page-path=off $(PAGE_PATH_OFF_TESTS) -k "$(PAGE_PATH_OFF_SELECTION)"

# The README's settings table, from `tap-custobar --about --format=markdown`.
readme: $(VENV)/.installed
	$(VENV)/bin/python scripts/sync_readme_settings.py

# Throughput and memory against the raw limit (never a test): `make bench N=1000000`.
N ?= 1000000
RUNS ?= 3
bench: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.bench --customers $(N) --runs $(RUNS) --streams customers
	$(VENV)/bin/python -m benchmarks.bench --customers $(N) --runs $(RUNS) --streams products,sales,events
	$(VENV)/bin/python -m benchmarks.bench --customers $(N) --memory-check --runs 1

# sandbox -> tap -> target-postgres -> a throwaway PostgreSQL, per loader setup (never a test):
# `make bench-pipeline N=1000000 RUNS=3`; CONTRIBUTING.md has the figures.
bench-pipeline: install
	$(VENV)/bin/python -m benchmarks.pipeline --customers $(N) --runs $(RUNS)
