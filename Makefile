# hybridmail.exchange - developer entry points.
#   make demo   set-up, then the main job against the lab's simulated Exchange fleet
#   make test   set-up, then every test (lint, sanity, unit, integration, molecule)
# Both work on a fresh machine: they create .venv and install requirements-dev.lock from PyPI.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock requirements.txt | cksum | cut -d' ' -f1)
COLLECTIONS := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/hybridmail/exchange
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_NOCOLOR := 1
export PATH := $(BIN):$(PATH)

.PHONY: demo test setup lint sanity unit integration molecule benchmark lock clean

setup: $(STAMP) $(COLLECTION_LINK)

$(STAMP): requirements-dev.lock requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -r requirements-dev.lock
	rm -f $(VENV)/.installed-*
	touch $@

# The collection must live under ansible_collections/<namespace>/<name> for Ansible to load it.
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

demo: setup
	$(BIN)/python tools/demo.py

test: setup lint sanity unit integration molecule

lint: setup
	$(BIN)/antsibull-changelog lint
	$(BIN)/ansible-lint

sanity: setup
	VENV_BIN=$(BIN) tools/sanity.sh

unit: setup
	$(BIN)/python -m pytest -q -n 2 tests/unit

integration: setup
	$(BIN)/python -m pytest -q -n 2 tests/integration

# The lab is started in each scenario's create step and stopped in destroy (extensions/molecule/).
molecule: setup
	$(BIN)/molecule test --all

# Prints figures (see benchmarks/fleet.py); not part of `make test`.
benchmark: setup
	$(BIN)/python benchmarks/fleet.py $(BENCH_ARGS)

# Regenerate the pinned development requirements from requirements-dev.in.
lock:
	rm -rf build/lockvenv && $(PYTHON) -m venv build/lockvenv
	build/lockvenv/bin/python -m pip install --quiet -r requirements-dev.in
	build/lockvenv/bin/python -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > requirements-dev.lock

clean:
	rm -rf build .venv .pytest_cache tests/output
