# The usual targets. `make run` and `make test` do all set-up on a fresh machine
# (Python 3.11 and make are all they need).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
BASE_STAMP := $(VENV)/.base-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: help install install-dev run test test-fast lint format typecheck imports-check migrations-check check bench chaos clean

help:
	@echo "make run        set up, then start web + worker + simulated Multitel (Ctrl-C stops all)"
	@echo "make test       set up, then run the whole test suite"
	@echo "make test-fast  the suite without the end-to-end and timing tests"
	@echo "make check      lint, format check, type check, layering (import-linter), migrations check"
	@echo "make lint / typecheck / imports-check / migrations-check   one of those checks"
	@echo "make format     format the code"
	@echo "make bench      set up, then run the benchmarks against the real stack (needs PostgreSQL and Redis;"
	@echo "                BENCH_ARGS=--quick for a run of a few minutes; writes bench/RESULTS.md)"
	@echo "make chaos      set up, then run the portal as five hosts (network namespaces; needs root) and"
	@echo "                make faults in the middle of jobs; prints a table of goals (CHAOS_ARGS=--help)"
	@echo "make clean      remove the virtual environment and local database"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BASE_STAMP): requirements/base.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	touch $@

$(DEV_STAMP): requirements/base.txt requirements/dev.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $(BASE_STAMP) $@

install: $(BASE_STAMP)
install-dev: $(DEV_STAMP)

run: $(BASE_STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py setup_demo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho --env local.env start

test: $(DEV_STAMP)
	$(BIN)/pytest

test-fast: $(DEV_STAMP)
	$(BIN)/pytest -m "not e2e and not timing"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy .

imports-check: $(DEV_STAMP)
	$(BIN)/lint-imports

migrations-check: $(DEV_STAMP)
	$(BIN)/python manage.py makemigrations --check --dry-run

check: lint typecheck imports-check migrations-check

BENCH_ARGS ?=
bench: $(DEV_STAMP)
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(BIN)/python bench/run.py $(BENCH_ARGS)

CHAOS_ARGS ?=
chaos: $(DEV_STAMP)
	$(BIN)/python chaos/run.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-shm db.sqlite3-wal .pytest_cache .mypy_cache .ruff_cache
