# `make run`: train the default experiment. `make test`: the test suite. `make lint`: ruff.
# `make image-check`: build the Docker image and train + evaluate inside it (docker/check.sh).
# Both create the virtualenv .venv first if it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
PYTEST_ARGS ?=
# pytest-xdist processes (auto: one per core); TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS ?= auto

.PHONY: run test lint venv clean image-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/bnn-lab $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

image-check:
	bash docker/check.sh

clean:
	rm -rf outputs multirun .pytest_cache
