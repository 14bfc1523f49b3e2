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

# The suite in two parts: everything that runs in simulated time on every core, then, alone on the machine,
# the tests that keep a real-time period or bound wall-clock time (marker `realtime`), where other tests
# competing for the cores would only add stalls to tell apart from the code's own.
test: lint
	$(BIN)/python -m pytest -m "not realtime" -n auto --dist worksteal
	$(BIN)/python -m pytest -m realtime

bench: $(TOOLS)
	$(BIN)/rfa bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
