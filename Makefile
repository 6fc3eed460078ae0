# Everything a fresh clone needs: `make demo` and `make test` create the virtual
# environment and install what they need themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vigil-installed

.PHONY: install demo test lint bench bench-dev bench-dev-pyod bench-sequences bench-review clean-state

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
	$(BIN)/vigil demo-feedback

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Detection quality and speed side by side with PyOD (about 30 minutes on 2 cores).
bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m benchmarks.tabular --datasets cardio thyroid mammography shuttle creditcard_ulb \
		--seeds 3 --out benchmarks/results/tabular.json --markdown benchmarks/RESULTS.md

# vigil's defaults across the whole dev pool (5 shared + 23 adbench_dev sets), capped
# protocol (benchmarks/devpool.py), against the cached PyOD baselines of bench-dev-pyod.
bench-dev: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m benchmarks.devpool --models vigil_vae vigil_gan \
		--out benchmarks/results/devpool_vigil.json
	$(BIN)/python -m benchmarks.devpool_report --pyod benchmarks/results/devpool_pyod*.json \
		--vigil benchmarks/results/devpool_vigil.json --only vigil_vae vigil_gan

# PyOD baselines on the same capped splits (slow: run once, the JSON is committed).
bench-dev-pyod: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m benchmarks.devpool --models pyod_deepsvdd pyod_autoencoder pyod_iforest \
		pyod_ecod --out benchmarks/results/devpool_pyod.json

# Sequence models on the Fraud-Detection-Handbook data (1.75M transactions).
bench-sequences: install
	$(BIN)/python -m benchmarks.sequences --out benchmarks/results/sequences.json \
		--markdown benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks.sequences --dataset typologies \
		--out benchmarks/results/typologies.json --markdown benchmarks/RESULTS.md

# Review app at scale: 1,000,000 flags over 200,000 cards in PostgreSQL (VIGIL_TEST_POSTGRES_URL).
bench-review: install
	$(BIN)/python -m benchmarks.review --out benchmarks/results/review.json \
		--markdown benchmarks/RESULTS.md

lint: install
	$(BIN)/ruff check .

clean-state:
	rm -rf .vigil
