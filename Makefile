# Developer and CI entry points.  See `.ci/run` for what CI does.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := venv

PYTHON        ?= python3.11
VENV          := .venv
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.installed
CONSTRAINTS   := $(wildcard constraints.txt)
PIP_CONSTRAIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

PORT          ?= 8000
DEMO_PASSWORD ?= demo-パスワード-2026
PYTEST_ARGS   ?=
BENCH_DIR     ?= instance/bench
BENCH_ARGS    ?=

.PHONY: venv system run test bench lint clean

venv: $(STAMP)

# (Re)install the project and its dev extra only when pyproject.toml or
# constraints.txt change.  The venv is created if missing (or recreated if its
# interpreter no longer runs, e.g. after the base Python was removed).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	if ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		rm -rf $(VENV); \
		$(PYTHON) -m venv --upgrade-deps $(VENV); \
	fi
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' $(PIP_CONSTRAIN)
	touch $@

system:
	bash .ci/system-packages.sh

run: system $(STAMP)
	PORTAL_ENV=development $(BIN)/flask --app wsgi db upgrade
	PORTAL_ENV=development $(BIN)/flask --app wsgi seed-demo --password "$(DEMO_PASSWORD)"
	PORTAL_ENV=development exec $(BIN)/gunicorn --workers 2 --bind 127.0.0.1:$(PORT) --access-logfile - wsgi:app

test: system $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/bandit -q -r portal -x portal/migrations --severity-level medium
	PORTAL_ENV=testing $(BIN)/pytest -q $(PYTEST_ARGS)

# Times the 特記事項 PDF: the portal's path against WeasyPrint alone (prints only; see the module);
# then the load benchmark: the large dataset (seeded once into $(BENCH_DIR), reused while current)
# under gunicorn with 16 clients, the CSV export, and a table of both (tests/benchmarks/load.py;
# figures also in test-artifacts/bench.json).  E.g. BENCH_ARGS="--seconds 20" for longer windows.
bench: system $(STAMP)
	mkdir -p $(BENCH_DIR)
	PORTAL_ENV=testing $(BIN)/python -m tests.benchmarks.clauses_pdf | tee $(BENCH_DIR)/clauses_pdf.txt
	$(BIN)/python -m tests.benchmarks.load --dir $(BENCH_DIR) --password "$(DEMO_PASSWORD)" \
		--pdf-report $(BENCH_DIR)/clauses_pdf.txt $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/bandit -q -r portal -x portal/migrations --severity-level medium
	$(BIN)/ruff format --check .

# Leaves instance/ (development database, secret key, outbox) alone.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./instance -prune -o -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
