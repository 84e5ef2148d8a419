# One-command entry points; every target creates .venv on first use.
#
# .venv's Python: the newest >= 3.12 found (jax 0.11 and later need it; under 3.11 pip
# quietly installs jax 0.10.2): python3.14 / 3.13 / 3.12 on PATH, then pyenv's versions
# ($PYENV_ROOT or ~/.pyenv). None: python3, with a notice. `make PY=/path/to/python` picks.
NEWEST_PY := $(shell for p in python3.14 python3.13 python3.12 \
  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.*/bin/python3 2>/dev/null); do \
  v=$$($$p -c 'import sys; print("%d%03d" % sys.version_info[:2])' 2>/dev/null) && \
  [ "$$v" -ge 3012 ] && echo "$$v $$p"; done | sort -rn | head -n 1 | cut -d' ' -f2)
PY ?= $(or $(NEWEST_PY),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install train test lint bench clean

$(STAMP): pyproject.toml
	@[ -n "$(NEWEST_PY)" ] || echo "notice: no Python >= 3.12 found; .venv uses $(PY)" \
	  "($$($(PY) --version 2>&1)), where pip installs jax 0.10.2 at most"
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; \
	  sys.exit(sys.version_info < (3, 12))' && [ -n "$(NEWEST_PY)" ]; then \
	  echo "notice: .venv has $$($(BIN)/python --version); rebuilding it with $(PY)"; \
	  rm -rf $(VENV); fi
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
	$(BIN)/python -m pytest -n 2 -q --durations=15 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check jaxdl experiments tests benchmarks

## jaxdl vs PyTorch peers, interleaved (ARGS=--quick for a smoke run, ARGS=--only=GROUP for one group).
## torch==2.13.0 is pinned: the release docs/benchmarks.md's figures were measured with. For
## .venv's Python 3.13 pip downloads its CUDA build from PyPI (runs on CPUs too; 6.0 GB in the
## venv, about 6 min on a 2-core EPYC, 2026-12-06). Any recent torch works (`bench`: torch>=2.4).
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]' 'torch==2.13.0'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
