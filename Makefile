# Two commands: `make demo` and `make test` (ruff, mypy, pytest). Each creates .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the compiled modules (JATS walk, language DFA walk) are rebuilt when a source or the build script changes
$(STAMP): $(BIN)/python pyproject.toml setup.py pmcurate/harvest/_jatswalk.pyx pmcurate/filters/_langid.pyx
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q pmcurate  # bytecode, as pip writes for a regular install
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pmcurate build manifests/demo.toml --out build/demo

test: $(STAMP)
	$(BIN)/ruff check pmcurate tests bench
	$(BIN)/ruff format --check pmcurate tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint format:
	$(BIN)/ruff format pmcurate tests bench
	$(BIN)/ruff check --fix pmcurate tests bench

bench: $(STAMP)
	$(BIN)/python bench/parse.py

clean:
	rm -rf $(VENV) build out .pytest_cache .ruff_cache .mypy_cache pmcurate/harvest/_jatswalk.c pmcurate/filters/_langid.c pmcurate/harvest/*.so pmcurate/filters/*.so
