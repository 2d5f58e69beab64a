# Mars terrain segmentation Kaggle kit. `make` (or `make help`) lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON_FOR_VENV ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
MARSSEG := $(VENV)/bin/marsseg
# `make setup` installs the CUDA build of TensorFlow where nvidia-smi answers, else the CPU build.
TF_EXTRA ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off
PRESET ?= gpu
DATA ?=
RUN ?= runs/$(PRESET)-$(shell date +%Y%m%d-%H%M%S)
# pytest-xdist on both cores; `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: help setup lint format test test-all test-kaggle-image demo data bench clean-venv
.PHONY: bundle check-rules canary submit submit-csv status emulator
.PHONY: clean-data

help: ## list the targets (this text)
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@echo ">> creating $(VENV) with $(PYTHON_FOR_VENV) (TensorFlow build: $(TF_EXTRA)); log in $(VENV)/install.log"
	@test -x $(PY) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	@$(PY) -m pip install $(PIP_FLAGS) -q --upgrade pip > $(VENV)/install.log 2>&1 || { tail -20 $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install $(PIP_FLAGS) -q -e ".[$(TF_EXTRA),dev]" >> $(VENV)/install.log 2>&1 || { grep -v "^WARNING: Location" $(VENV)/install.log | tail -20; echo "pip install failed (full log: $(VENV)/install.log)"; exit 1; }
	@touch $@
	@echo ">> $(VENV) ready"

setup: $(VENV)/.installed ## create .venv/ and install the kit editable (CPU or CUDA TensorFlow, detected)

lint: $(VENV)/.installed ## ruff: lint and format check of src/, tests/ and scripts/ (`make format` fixes what it can)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: $(VENV)/.installed ## ruff: apply the formatter and the safe fixes
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

test: lint ## lint, then the fast test suite (slow tests deselected; the Kaggle-image smoke run included)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: lint ## lint, then every test, slow ones included
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-kaggle-image: $(VENV)/.installed ## run the kernel's smoke run under both Kaggle stacks: the competition's (Py 3.10, 2024 pins) and today's (Py 3.12, Colab 2026-05); envs cached in ~/.cache/marsseg
	$(PY) -m tests.helpers.kaggle_image

demo: $(VENV)/.installed ## the whole two-stage pipeline on synthetic data (cpu preset, < 10 min), scored against its truth
	$(MARSSEG) demo --out runs/demo

.PHONY: config
config: $(VENV)/.installed ## every setting of a preset: value, type, allowed values, meaning and why (PRESET=gpu)
	$(MARSSEG) config show --preset $(PRESET)

.PHONY: train
train: $(VENV)/.installed ## train both stages and write a submission (PRESET=gpu, DATA=path or found, RUN=runs/...)
	$(MARSSEG) train --preset $(PRESET) $(if $(DATA),--data $(DATA)) --out $(RUN)

data: $(VENV)/.installed ## download the competition data to data/ (Kaggle credentials), else make synthetic data
	$(MARSSEG) data --dir data

bench: $(VENV)/.installed ## measure speed and quality (about 4 hours on 2 cores: the quality, quality_long, stage2, recipe and ensemble sections); writes BENCHMARKS.md
	$(MARSSEG) bench --out BENCHMARKS.md

CLEAN_IN ?= $(or $(DATA),data/mars_for_students.npz)
CLEAN_OUT ?= data/clean.npz

clean-data: $(VENV)/.installed ## remove outliers from DATA (default data/mars_for_students.npz) -> data/clean.npz + big-rock copies; report in runs/clean-report
	$(MARSSEG) inspect $(CLEAN_IN) --plot runs/clean-report
	$(MARSSEG) clean $(CLEAN_IN) --out $(CLEAN_OUT) --report runs/clean-report --augment-bigrock --preset $(PRESET)

# ---- the GPU measurement, for a lent GPU machine (JAX and PyTorch, no TensorFlow, no network): the packages the
# kit needs beyond that image travel as wheels in .whl/ (`make gpu-wheels` here, then carry .whl).
GPU_WHEELS := keras==3.15.1 namex==0.1.0 optree==0.20.0 albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 \
	pydantic_core==2.50.5 typing-inspection==0.4.5 annotated-types==0.7.0 simsimd==6.5.16 stringzilla==5.3.2
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
.PHONY: gpu-check gpu-wheels
gpu-check: ## on a GPU (KERAS_BACKEND=jax): the kaggle preset's canary on full-size data (< 8 min) -> BENCHMARKS.md gpu block
	@if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; fi
	PYTHONPATH=/tmp/site:src KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(GPU_PY) -m marsseg_bench.gpu_check $(GPU_CHECK_ARGS)

gpu-wheels: ## download the wheels gpu-check needs on the lent GPU image (Python 3.12) into .whl/
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform any -d .whl $(GPU_WHEELS)

clean-venv: ## delete .venv/ (the next target recreates it)
	rm -rf $(VENV)

# ---- the Kaggle path (bundle, rules, submit); MARSSEG_KAGGLE_ENDPOINT routes it to `make emulator`
FILE ?=
FORCE ?=
PORT ?= 7777

bundle: $(VENV)/.installed ## bundle src/marsseg into the kernel script kernels/marsseg_kernel.py
	$(MARSSEG) bundle

check-rules: $(VENV)/.installed ## check the kernel and kernel-metadata.json against the competition rules
	$(MARSSEG) check-rules

ACCELERATOR ?=
canary: $(VENV)/.installed ## push the kernel as a ~10-min canary (same machine), print speeds and the projected full run; submits nothing
	$(MARSSEG) submit --canary $(if $(ACCELERATOR),--accelerator $(ACCELERATOR)) $(if $(FORCE),--force)

submit: $(VENV)/.installed ## bundle, rules and GPU quota checks, push, wait, fetch, validate, zip, submit once, record (FORCE=1: past the quota; MODELS=1: fetch the models too)
	$(MARSSEG) submit $(if $(FORCE),--force) $(if $(MODELS),--models) $(if $(ACCELERATOR),--accelerator $(ACCELERATOR))

submit-csv: $(VENV)/.installed ## submit a locally made CSV: make submit-csv FILE=runs/x/submission.csv
	@test -n "$(FILE)" || { echo "usage: make submit-csv FILE=path/to/submission.csv"; exit 2; }
	$(MARSSEG) submit --file "$(FILE)"

status: $(VENV)/.installed ## the latest Kaggle kernel run and the latest recorded submission
	$(MARSSEG) status

emulator: $(VENV)/.installed ## a loopback Kaggle for dry runs (see `marsseg emulator --print-env`)
	$(MARSSEG) emulator --port $(PORT) --root .emulator

# ---- leaderboard tracking (history under submissions/; MARSSEG_KAGGLE_ENDPOINT routes it to `make emulator`)
WATCH ?=
.PHONY: track plot

track: $(VENV)/.installed ## snapshot the public leaderboard and own submissions (WATCH=30m repeats until stopped)
	$(MARSSEG) track $(if $(WATCH),--watch $(WATCH))
	$(MARSSEG) leaderboard

plot: $(VENV)/.installed ## draw the leaderboard history as PNGs under submissions/
	$(MARSSEG) plot
