# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench train-injection lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# Reinstall only when the dependency declarations change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench,scale]'
	touch $(STAMP)

install: $(STAMP)

run: install
	@echo "Starting the Mantlet gateway on its embedded defaults (http://127.0.0.1:8080/v1, Ctrl-C stops it)."
	$(BIN)/mantlet serve

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: install
	$(BIN)/mypy src

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/secrets_vs_detect_secrets.py
	$(BIN)/python bench/injection_latency.py

# Rebuild the shipped prompt-injection model from ../shared/datasets (about
# 15 minutes on 2 cores); writes src/mantlet/detectors/injection/model/.
train-injection: install
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench,scale,train]'
	$(BIN)/python tools/train_injection.py

# Regenerate the pinned versions after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench,scale,train]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
