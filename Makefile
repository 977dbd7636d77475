# Two entry points for a fresh machine: `make run` and `make test` (see README, Quick start).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= results/main

.PHONY: install run test bench clean

# torch is installed first and pinned: on the project's CPU machines its 2.13.0 wheel is on
# disk; letting the resolver choose would fetch a newer build with gigabytes of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: every strategy on the embedded digits set, 3 trials; a finished run is
# re-reported, an interrupted one resumed.
# Two (strategy, trial) runs at a time: the small CNN uses one core each, results are the same.
run: install
	@if [ -f $(OUT)/store.sqlite ]; then \
		$(BIN)/activeloss run --resume --out $(OUT) --parallel-trials 2; \
	else \
		$(BIN)/activeloss run --out $(OUT) --parallel-trials 2; \
	fi

# Lint and type-check the package first (seconds), then the whole suite (slow tests included).
test: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/bench_gradnorm.py
	$(BIN)/python bench/bench_kcenter.py
	$(BIN)/python bench/bench_protocol.py
	# the small configuration where fixed costs dominate (docs/performance.md)
	$(BIN)/python bench/bench_protocol.py --n 50000 --test 1000 --cycles 2 --epochs 2 --initial 256 --budget 256 \
		--subset 1024 --batch-size 128 --threads 2 --model resnet18 --strategy llal
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_detection.py

clean:
	rm -rf $(VENV) results build src/*.egg-info .pytest_cache
