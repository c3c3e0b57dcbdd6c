# Two entry points (see README): `make run` (the main job) and `make test` (the test suite).
# Both create .venv and install everything on a fresh machine; later runs reuse it.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test lint typecheck pytest pytest-boundscheck bench bench-save bench-compare \
	throughput clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel lies on local disk; any other spec pulls CUDA builds
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kalshi-rl up $(ARGS)

test: lint typecheck pytest pytest-boundscheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The kernel tests again with Numba's bounds checks on: an out-of-range index raises
# IndexError instead of reading whatever memory follows.  Its own cache directory: code
# compiled with bounds checks must not be mixed with the normal cache.
BOUNDSCHECK_CACHE ?= $(CURDIR)/.numba-cache-bc
pytest-boundscheck: $(STAMP)
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(BOUNDSCHECK_CACHE) \
		$(BIN)/pytest -p no:cacheprovider tests/core tests/kalshi_rl/env $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/pytest bench/ --benchmark-columns=min,median,mean,ops,rounds

# Regression suite (bench/README.md "Regression suite"): save a baseline, then compare a
# later run with it, failing when a benchmark's median is more than BENCH_FAIL % slower.
BENCH_FAIL    ?= 25
BENCH_STORAGE ?= file://$(CURDIR)/.benchmarks
BENCH_PATHS   ?= bench/
BENCH_RUN     := $(BIN)/pytest $(BENCH_PATHS) -p no:cacheprovider --benchmark-only \
	--benchmark-storage=$(BENCH_STORAGE) --benchmark-columns=min,median,max,rounds $(BENCH_ARGS)
bench-save: $(STAMP)
	$(BENCH_RUN) --benchmark-save=baseline
bench-compare: $(STAMP)
	$(BENCH_RUN) --benchmark-compare --benchmark-compare-fail=median:$(BENCH_FAIL)%

throughput: $(STAMP)
	$(BIN)/python bench/throughput.py

clean-venv:
	rm -rf $(VENV)
