# Two set-up commands for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv when it is missing and install from pyproject.toml under
# constraints.txt; the install is redone only when either file changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Tests and benchmarks run on a 2-core machine: keep BLAS from oversubscribing.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: demo test test-slow test-browser lint typecheck bench bench-envs install install-dev results clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch goes in first and alone, as the exact CPU build, so nothing later re-resolves it.
$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The product's main job: physics check, train a small GateCalibration agent, evaluate it
# against the baselines on held-out devices, export it (ONNX + manifest), replay the export
# on the simulated backend; everything under demo_out/, summary at the end (~5 min, 2 cores).
demo: $(VENV)/.installed
	$(PY) -m pulsecal.scripts.demo

# The full evaluation (up to about an hour on 2 cores): trains the three agents, evaluates
# them against every baseline, writes docs/results.md and docs/results/*.png to commit.
# `make results ARGS=--quick` checks the pipeline end to end on tiny budgets in a temp folder.
results: $(VENV)/.installed
	$(PY) -m pulsecal.scripts.results $(ARGS)

# ruff, then the layering contracts of pyproject.toml (import-linter).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check envs agents hardware configs scripts tests
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy envs hardware agents scripts

# The default tier on one worker per core of the 2-core CI machine (pytest-xdist): every test
# keeps to its own tmp_path, and the numba cache is per kernel, so workers share nothing else.
PYTEST_WORKERS ?= 2
test: lint typecheck
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

test-slow: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m slow

# The calibration report in a real headless browser (Debian's chromium, installed with apt
# when missing: needs root or sudo-less apt). Report and screenshot stay in demo_out/report_browser/.
test-browser: $(VENV)/.installed-dev
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	PULSECAL_BROWSER_OUT=$(CURDIR)/demo_out/report_browser $(BIN)/pytest -q -m browser tests/agents/graph

bench: $(VENV)/.installed-dev
	$(PY) -m pulsecal.scripts.bench_physics --out bench_physics.json

bench-envs: $(VENV)/.installed-dev
	$(PY) -m pulsecal.scripts.bench_envs --out bench_envs.json

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .mypy_cache
