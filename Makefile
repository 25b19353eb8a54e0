# Two commands:
#   make demo   the whole job end to end on a small simulated dataset (simulate, prep_data, train the
#               Demo config, one pseudo-label round, stacking), then the out-of-fold AUCs
#   make test   the test suite
# Both create .venv (python3.11, else python3) when it is missing and install the pinned
# requirements.txt and the project itself (editable: pip install -e .) into it; the install is
# redone only when requirements.txt or pyproject.toml changes.
# Every size below can be overridden on the command line: make demo DEMO_N_TRAIN=500 DEMO_N_TEST=100

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
REQUIREMENTS_STAMP := $(VENV)/.requirements-installed

DEMO_ROOT ?= demo_data
DEMO_DIR ?= $(DEMO_ROOT)/input
DEMO_RESULTS ?= $(DEMO_ROOT)/results
DEMO_N_TRAIN ?= 2000
DEMO_N_TEST ?= 500
DEMO_SEED ?= 0
DEMO_WORKERS ?= 2
DEMO_CONFIG ?= Demo
DEMO_PSEUDO_CONFIG ?= PseudoDemo
DEMO_TRAIN_FLAGS ?=
DEMO_ENV = G2NET_INPUT_DIR=$(DEMO_DIR) G2NET_RESULTS_DIR=$(DEMO_RESULTS)
# Simulation and prep are redone only when their inputs change (sizes, seed, the code); the demo
# folder is the Makefile's own, so a changed simulator replaces it (--overwrite).
DEMO_SIMULATED := $(DEMO_DIR)/.simulated-$(DEMO_N_TRAIN)-$(DEMO_N_TEST)-$(DEMO_SEED)
DEMO_PREPARED := $(DEMO_DIR)/train_cache.npy

PYTEST_ARGS ?=

.PHONY: help venv demo test clean-demo

help:
	@echo "make demo        simulate $(DEMO_N_TRAIN)+$(DEMO_N_TEST) examples in $(DEMO_DIR), prep, train $(DEMO_CONFIG)," \
	      "pseudo-label ($(DEMO_PSEUDO_CONFIG)), stack; results in $(DEMO_RESULTS)"
	@echo "make test        run the test suite"
	@echo "make venv        only create $(VENV) and install requirements.txt"
	@echo "make clean-demo  delete $(DEMO_ROOT)/"

venv: $(REQUIREMENTS_STAMP)

$(VENV_PYTHON):
	@if [ -z "$(PYTHON)" ]; then echo "error: neither python3.11 nor python3 is on PATH; install Python 3.11" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; v == (3, 11) or print(f"warning: {sys.executable} is Python {v[0]}.{v[1]}; the pins are tested with 3.11", file=sys.stderr)'
	$(PYTHON) -m venv $(VENV)

$(REQUIREMENTS_STAMP): requirements.txt pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -r requirements.txt
	$(VENV_PYTHON) -m pip install --no-deps -e .
	touch $@

$(DEMO_SIMULATED): simulate.py $(wildcard g2net/simulation/*.py) $(wildcard data/g2net_asd.txt) | $(REQUIREMENTS_STAMP)
	rm -f $(DEMO_DIR)/.simulated-*
	$(VENV_PYTHON) simulate.py --out $(DEMO_DIR) --n-train $(DEMO_N_TRAIN) --n-test $(DEMO_N_TEST) --overwrite \
	    --seed $(DEMO_SEED) --workers $(DEMO_WORKERS)
	touch $@

$(DEMO_PREPARED): $(DEMO_SIMULATED) prep_data.py | $(REQUIREMENTS_STAMP)
	$(DEMO_ENV) $(VENV_PYTHON) prep_data.py --cache

demo: $(DEMO_PREPARED) | $(REQUIREMENTS_STAMP)
	$(DEMO_ENV) $(VENV_PYTHON) train.py --config $(DEMO_CONFIG) $(DEMO_TRAIN_FLAGS)
	$(DEMO_ENV) $(VENV_PYTHON) train_pseudo.py --config $(DEMO_PSEUDO_CONFIG) $(DEMO_TRAIN_FLAGS)
	$(DEMO_ENV) $(VENV_PYTHON) stacking.py
	@echo
	@echo "== make demo: out-of-fold AUC of every model and blend ($(DEMO_RESULTS)/stacking_report.csv) =="
	@$(DEMO_ENV) $(VENV_PYTHON) -c 'import pandas as pd, utils; from g2net import stacking; \
	    report = pd.read_csv(utils.results_dir() / stacking.REPORT_FILE); \
	    print(stacking.format_report(report), *stacking.summary_lines(report), sep="\n")'
	@echo
	@echo "simulated data, train.csv, test.csv, caches: $(DEMO_DIR)/"
	@echo "checkpoints, out-of-fold and test predictions: $(DEMO_RESULTS)/$(DEMO_CONFIG)/, $(DEMO_RESULTS)/$(DEMO_PSEUDO_CONFIG)/"
	@echo "submission: $(DEMO_RESULTS)/submission.csv"

test: $(REQUIREMENTS_STAMP)
	$(VENV_PYTHON) -m pytest -q --durations=15 $(PYTEST_ARGS) tests

clean-demo:
	@if [ -n "$(DEMO_ROOT)" ] && [ "$(DEMO_ROOT)" != "/" ]; then rm -rf -- "$(DEMO_ROOT)"; fi
