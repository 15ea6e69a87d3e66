# `make test`: build .venv from the lock file, lint, run the suite.
# `make demo`: build .venv, run a real active-learning trajectory (MNIST when the data
# directory has it, else scikit-learn's bundled digits).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ARCHDAL_DATA ?= $(abspath ../shared/data)

.PHONY: setup test lint demo bench clean

$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q --durations=10

demo: setup
	@if [ -d "$(ARCHDAL_DATA)/MNIST/raw" ]; then set -- mnist; else set -- digits; fi; \
	echo "demo: margin sampling on $$1, ResNet-18 (width 0.25) -> runs/demo-$$1"; \
	$(BIN)/archdal run --dataset $$1 --arch resnet18 --width 0.25 --strategy margin \
		--seed 0 --init-size 100 --acq-size 100 --rounds 5 --pool-size 5000 \
		--val-fraction 0.02 --max-epochs 50 --patience 10 --out runs/demo-$$1

bench: setup
	$(BIN)/python benchmarks/selection.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
