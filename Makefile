# The two commands a fresh machine needs: `make train` (the default model) and `make test`.
# Each creates or updates the virtual environment in .venv when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test test-slow lint clean-venv

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

train: $(BIN)/.installed
	$(BIN)/python -m gptjax.train $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(BIN)/.installed  # the import layering in pyproject.toml ([tool.importlinter]; docs/architecture.md)
	$(BIN)/lint-imports --no-logo --no-cache

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow $(ARGS)

clean-venv:
	rm -rf $(VENV)
