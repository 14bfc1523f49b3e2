# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv on first use.
# `make run` installs only what a procedure needs (the runtime dependencies); `make test`, `make lint` and
# `make bench` add the tools (the dev and plot extras) on their first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TOOLS := $(VENV)/.installed-tools

.PHONY: run test lint bench clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(TOOLS): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev,plot]'
	touch $(TOOLS)

run: $(RUNTIME)
	$(BIN)/rfa run --yes

lint: $(TOOLS)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(TOOLS)
	$(BIN)/rfa bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
