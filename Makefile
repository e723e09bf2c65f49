# Two commands do all set-up: `make run` and `make test`. Both create .venv and
# install leadflow into it (editable, with the dev tools) when it is missing or
# pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline machines: keep the Prefect server from reporting telemetry errors.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# mkdocs-material prints a banner about its future on every build; the build is offline.
export NO_MKDOCS_2_WARNING ?= 1

.PHONY: run test test-fast check lint docs docs-serve bench clean shadow

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/leadflow run examples/leads.csv

# leadflow beside the example current process (examples/legacy/process.py), then the
# report: summary and verdict printed, HTML and CSV in .leadflow/reports/.
shadow: $(STAMP)
	@# the report runs even when a side failed for some lead (errors are findings too)
	$(BIN)/leadflow shadow examples/leads.csv --legacy python:examples.legacy.process:decide; \
	  status=$$?; $(BIN)/leadflow report && exit $$status

# The tests run on TEST_WORKERS processes (pytest-xdist), a file to a process so a
# module's own Prefect server or vendor is started once; TEST_WORKERS=0 runs them in
# this process, one at a time. Two is what CI's 2 cores take: the e2e and slow tiers
# wait on servers and subprocesses more than they compute.
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadfile

# Ends with how long it took, lint to last test (the install, when one ran, not counted).
test: $(STAMP)
	@start=$$(date +%s); \
	  $(MAKE) --no-print-directory lint docs && $(BIN)/pytest $(PARALLEL); status=$$?; \
	  took=$$(( $$(date +%s) - start )); \
	  echo "make test: $$((took / 60)) min $$((took % 60)) s (lint, types, docs, tests), exit $$status"; \
	  exit $$status

# The day-to-day loop: lint, types and the tests that start no server or subprocess.
check: $(STAMP) lint
	$(BIN)/pytest -q $(PARALLEL) tests/unit tests/contract

# Everything but the e2e and slow tiers (tests/conftest.py): the flows against a real
# Prefect API, the integration tests, the unit and contract tests.
test-fast: $(STAMP) lint
	$(BIN)/pytest -q $(PARALLEL) -m "not e2e and not slow"

lint: $(STAMP) types
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy maps modules to folders, and leadflow.flows/.integrations/.app live in flows/,
# integrations/, app/ (pyproject's package-dir); so it checks a tree of links shaped like the
# installed package, rebuilt each run (a new module needs no step), and the paths it prints
# are turned back into the source tree's. The example plug-in (examples/plugin/) is checked
# strictly too, as a plug-in author would. Modes per module: [tool.mypy] in pyproject.toml.
TYPES_TREE := .mypy_tree
types: $(STAMP)
	@rm -rf $(TYPES_TREE) && mkdir -p $(TYPES_TREE)/leadflow
	@ln -s $(CURDIR)/leadflow/* $(TYPES_TREE)/leadflow/
	@for d in flows integrations app; do ln -s $(CURDIR)/$$d $(TYPES_TREE)/leadflow/$$d; done
	@ln -s $(CURDIR)/examples/plugin/leadflow-acme/src/leadflow_acme $(TYPES_TREE)/
	@cd $(TYPES_TREE) && ../$(BIN)/mypy --config-file ../pyproject.toml \
	  --cache-dir ../.mypy_cache -p leadflow -p leadflow_acme \
	  > mypy.out; status=$$?; \
	  sed -E 's#^leadflow/(flows|integrations|app)/#\1/#' mypy.out; exit $$status

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link, a
# missing page or a reference that no longer matches the code fails the build (not
# --quiet: it hides the warnings that --strict counts, and a broken link would pass).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The site on http://127.0.0.1:8000, rebuilt as docs/ changes.
docs-serve: $(STAMP)
	$(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/leadflow bench --json bench.json --chart bench.svg

clean:
	rm -rf $(VENV) .leadflow .pytest_cache .ruff_cache .mypy_cache $(TYPES_TREE) site
