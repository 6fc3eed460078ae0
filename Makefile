# Everything a fresh clone needs: `make demo` and `make test` create the virtual
# environment and install what they need themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vigil-installed

.PHONY: install demo test test-slow lint bench bench-dev bench-dev-pyod bench-sequences bench-review clean-state

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly this version: the CPU wheel on disk (constraints.txt says why).
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/vigil demo

# Two workers (one core each on the 2-core CI machine); a module's tests stay on one
# worker because several modules share a trained model or a server through a fixture;
# modules are handed out longest first (tests/conftest.py lists them), not by number of
# tests; the 30 slowest tests are listed at the end, for whoever makes the suite faster.
TEST_WORKERS ?= 2

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

# Benchmarks run from a clone through one runner, `python -m benchmarks SUITE` (the suites
# and their default arguments: benchmarks/suites.yaml). Each writes benchmarks/results/SUITE.json
# and its section of benchmarks/RESULTS.md; `python -m benchmarks --list` shows them all.
BENCH := $(BIN)/python -m benchmarks
BENCH_DEPS = $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"

# Quality bars that train whole pipelines several times (the demo's learned models
# against its rules baseline on three seeds): minutes each, so outside `make test`.
test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Detection quality and speed side by side with PyOD on five real tabular sets.
bench: install
	$(BENCH_DEPS)
	$(BENCH) tabular

# vigil's defaults across the whole dev pool (5 shared + 23 adbench_dev sets), capped
# protocol, against the cached PyOD baselines of bench-dev-pyod.
bench-dev: install
	$(BENCH_DEPS)
	$(BENCH) devpool

# PyOD baselines on the same capped splits (slow: run once, the JSON is committed).
bench-dev-pyod: install
	$(BENCH_DEPS)
	$(BENCH) devpool --only pyod

# Sequence models on the Fraud-Detection-Handbook data (1.75M transactions), then the
# generated typology set through the CLI.
bench-sequences: install
	$(BENCH) sequences
	$(BENCH) typologies

# Review app at scale: 1,000,000 flags over 200,000 cards in PostgreSQL (VIGIL_TEST_POSTGRES_URL).
bench-review: install
	$(BENCH) review

lint: install
	$(BIN)/ruff check .

clean-state:
	rm -rf .vigil
