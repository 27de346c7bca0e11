# The two commands: `make test` (lint, types, every test) and `make demo` (a full overnight run, embedded defaults).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: test lint typecheck pytest demo bench bench-events bench-import clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: $(DEV_STAMP)
	$(BIN)/ruff check overnight signatures tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy overnight signatures

pytest: $(DEV_STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# The local-model extra joins this target with the LM backends; the runner prints not_implemented until built.
demo: $(DEV_STAMP)
	$(BIN)/overnight run

bench-events: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_events.py

bench-import: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_import.py

bench: bench-events bench-import

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
