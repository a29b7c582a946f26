# Every target creates .venv and installs featbench into it on first use; the stamp
# file makes later calls instant until pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.featbench-installed

.PHONY: bench test lint perf clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

bench: $(STAMP)  ## run experiments/default.toml, write results/default/
	$(BIN)/featbench run experiments/default.toml

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest

perf: $(STAMP)  ## speed and memory ratios against references measured in the same run -> results/perf/
	$(BIN)/featbench perf

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check featbench tests

clean:  ## remove the environment and build leftovers (results/ and the feature cache stay)
	rm -rf $(VENV) build *.egg-info featbench.egg-info .pytest_cache .ruff_cache
