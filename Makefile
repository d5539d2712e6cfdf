# The README's commands. Each sets up what it needs (a virtualenv in .venv)
# from a clean clone with only Python 3.11 and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sandbox,postgres]'
	touch $(STAMP)

## demo: sandbox platform + daemon + sample data + annotator → labels in the mirror
demo: $(STAMP)
	$(BIN)/syncd demo

## test: lint, type-check and run the whole test suite
test: $(STAMP) lint
	$(BIN)/pytest -q -ra

## test-fast: the same without the slow tests (chaos, large data, the container build): local loops
test-fast: $(STAMP) lint
	$(BIN)/pytest -q -ra -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check syncd syncd_sandbox tests bench
	$(BIN)/ruff format --check syncd syncd_sandbox tests bench
	$(BIN)/mypy
	$(BIN)/mypy bench

## bench: upload, pull and watch benchmarks against references measured in the same run (rewrites bench/RESULTS.md)
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache *.egg-info
