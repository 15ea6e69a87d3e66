# `make test`: build .venv from the lock file, lint, run the suite.
# `make demo`: build .venv, run the Focus 1 smoke sweep on a local Ray (MNIST when the data
# directory has it, else scikit-learn's bundled digits) into runs/focus1-demo; run again to resume.
# The sweep ends by writing its analysis report to runs/focus1-demo/report/report.html.
# `make trajectory`: one active-learning trajectory without Ray, into runs/demo-<dataset>.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ARCHDAL_DATA ?= $(abspath ../shared/data)

.PHONY: setup test lint demo trajectory bench clean

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
	$(BIN)/python -m pytest -q -n 2 -m 'not machine_wide_ray' --durations=10
	$(BIN)/python -m pytest -q -m machine_wide_ray

demo: setup
	@if [ -d "$(ARCHDAL_DATA)/MNIST/raw" ]; then \
		set -- --datasets mnist --set val_fraction=0.01 --data-dir "$(ARCHDAL_DATA)"; fi; \
	if [ -f runs/focus1-demo/archdal_sweep.json ]; then set -- "$$@" --resume; fi; \
	$(BIN)/python sweeps/focus1.py --preset smoke --storage "$(abspath runs)" \
		--name focus1-demo "$$@"

trajectory: setup
	@if [ -d "$(ARCHDAL_DATA)/MNIST/raw" ]; then set -- mnist; else set -- digits; fi; \
	echo "trajectory: margin sampling on $$1, ResNet-18 (width 0.25) -> runs/demo-$$1"; \
	$(BIN)/archdal run --dataset $$1 --arch resnet18 --width 0.25 --strategy margin \
		--seed 0 --init-size 100 --acq-size 100 --rounds 5 --pool-size 5000 \
		--val-fraction 0.02 --max-epochs 50 --patience 10 --out runs/demo-$$1

bench: setup
	$(BIN)/python benchmarks/selection.py
	$(BIN)/python benchmarks/ray_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
