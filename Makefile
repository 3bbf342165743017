# Two entry points for a fresh machine (see README.md): `make run` and `make test`.
# Both create .venv, install torch 2.13.0 (CPU) explicitly first, then the project.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck default-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[all,test,dev]"

run: install
	$(BIN)/zoo run

# Rebuild the shipped default model (zoo/zoo_codelet/weights/) with the project's own pipeline:
# stdlib corpus -> tokenizer -> datasets -> zoo train (pretrain, instruct) -> export -> evaluate.
default-model: install
	$(BIN)/zoo codelet build --from-step corpus

test: install
	@$(BIN)/python -m pytest -n 2 --durations=25 $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$status

lint: install
	$(BIN)/ruff check core plugins zoo tests examples

typecheck: install
	$(BIN)/mypy core plugins zoo
