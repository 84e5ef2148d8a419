# One-command entry points; every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install train test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main experiment: the reference CNN on MNIST (embedded subset unless full MNIST is local).
train: $(STAMP)
	$(BIN)/python -m experiments.cnn_mnist --workdir runs/cnn_mnist $(ARGS)

## The whole suite (two workers; slow multi-process tests included).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check jaxdl experiments tests benchmarks

## jaxdl vs PyTorch peers, interleaved (~10-15 min on 2 cores; ARGS=--quick for a smoke run).
## torch==2.13.0 is pinned here because its CPU wheel is on this machine's local disk;
## elsewhere any recent torch (the `bench` extra: torch>=2.4) works.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]' 'torch==2.13.0'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
