# The two README commands: `make demo` (set up, convert the bundled weights, show Keras vs PyTorch)
# and `make test` (set up, run the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# A pinned torch first: pip takes the local CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup demo test lint goldens clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[keras,finetune,test,export,lambda]'
	# the C++ LSTM loop, built once here so no user call compiles or waits on a build lock
	$(BIN)/python -m parity.ports.recurrent.backends.build
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m reference_keras.demo

test: $(STAMP)
	$(BIN)/ruff check .
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Regenerate the golden files from Keras (only when a case changes; tests cross-check them live).
goldens: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m tests.golden_cases

clean:
	rm -rf $(VENV) out .pytest_cache
