# virtnet.podnet - a thin convenience over ./podnet-dev, which needs only bash and python3
# (a fresh machine has no make: ./podnet-dev setup installs it). Every target runs the script;
# the script picks the Python and the lock file at run time, after the Debian packages are in.
# Overrides: make VENV=... PYTHON_BASE=/path/to/python3.x <target>

SHELL := /bin/bash
VENV ?= .venv
PYTHON_BASE ?=
DEV := VENV="$(VENV)" PYTHON_BASE="$(PYTHON_BASE)" ./podnet-dev

.PHONY: help setup test test-unit test-integration sanity lint molecule demo bench clean

help:
	@./podnet-dev help

setup:
	@$(DEV) setup

test:
	@$(DEV) test all

test-unit:
	@$(DEV) test unit

test-integration:
	@$(DEV) test integration

sanity:
	@$(DEV) test sanity

lint:
	@$(DEV) test lint

molecule:
	@$(DEV) test molecule

demo:
	@$(DEV) demo

bench:
	@$(DEV) bench

clean:
	@$(DEV) clean
