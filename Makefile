# virtnet.podnet — one-command setup, test, demo and benchmarks.
# Everything runs from a venv built from the pinned lock files in requirements/.

SHELL := /bin/bash
VENV ?= .venv
PYTHON_BASE ?= $(shell tools/find_python.sh)
PY := $(VENV)/bin/python
# ansible-core >= 2.20 needs Python >= 3.12; on 3.11 the 2.19 lock file is used.
LOCK := $(shell $(PYTHON_BASE) -c 'import sys; print("requirements/dev.txt" if sys.version_info >= (3, 12) else "requirements/dev-py311.txt")' 2>/dev/null)
STAMP := $(VENV)/.installed-$(notdir $(LOCK))

.PHONY: help setup deps venv test test-unit test-integration sanity lint molecule demo bench clean

help:
	@echo "make demo   - set up everything and run the main job (playbooks/demo.yml)"
	@echo "make test   - the whole suite: pytest (unit + integration), ansible-test sanity, ansible-lint, molecule"
	@echo "make bench  - run the benchmarks and write the reports under docs/"
	@echo "make setup  - only install Debian packages and build the venv ($(VENV))"
	@echo "make clean  - remove the venv and build output"

setup: deps venv

deps:
	@tools/system_deps.sh
	@tools/system_deps_vm.sh

venv: $(STAMP)

$(STAMP): $(LOCK)
	@test -n "$(PYTHON_BASE)" || { echo "no usable Python found"; exit 1; }
	@echo "building $(VENV) with $(PYTHON_BASE) from $(LOCK)"
	@rm -rf $(VENV)
	@$(PYTHON_BASE) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	@touch $@

test: setup
	@VENV=$(VENV) tools/run_tests.sh all

test-unit: setup
	@VENV=$(VENV) tools/run_tests.sh unit

test-integration: setup
	@VENV=$(VENV) tools/run_tests.sh integration

sanity: setup
	@VENV=$(VENV) tools/run_tests.sh sanity

lint: setup
	@VENV=$(VENV) tools/run_tests.sh lint

molecule: setup
	@VENV=$(VENV) tools/run_tests.sh molecule

demo: setup
	@VENV=$(VENV) tools/demo.sh

bench: setup
	@VENV=$(VENV) tools/bench.sh

clean:
	rm -rf $(VENV) .build tests/output .pytest_cache .hypothesis
