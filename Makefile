# make demo: set up and run the default recipe.  make test: set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ONNX Runtime's CPU build by default; on an NVIDIA machine: make setup EXTRAS=gpu,tensorrt,dev
# (in a fresh .venv: the two builds cannot share one)
EXTRAS ?= cpu,dev

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: setup
	$(BIN)/edgeopt run recipes/demo.yaml

test: setup
	$(BIN)/python -m pytest

# the model suites first, then the benchmark's own bars, stated last from one run
bench: setup
	$(BIN)/edgeopt run recipes/resnet.yaml
	$(BIN)/edgeopt run recipes/minilm.yaml
	$(BIN)/edgeopt run recipes/compress.yaml
	$(BIN)/edgeopt run recipes/bench.yaml
	$(BIN)/edgeopt run recipes/bench-reordered.yaml
	$(BIN)/edgeopt compare runs/bench runs/bench-reordered
	$(BIN)/python -m bench.acceptance runs/bench runs/bench-reordered

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf runs .pytest_cache .ruff_cache
