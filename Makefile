# hybridmail.exchange - developer entry points.
#   make demo   set-up, then the main job against the lab's simulated Exchange fleet
#   make test   set-up, then every test (lint, sanity, unit, integration, molecule, matrix)
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
# The ansible-core releases `make matrix` tests besides requirements-dev.lock's 2.19: the newest patch of
# each older minor release that meta/runtime.yml claims (requires_ansible), pinned exactly.
MATRIX_CORES := 2.17.14 2.18.19
MATRIX_SUM := $(shell cat requirements-matrix.lock | cksum | cut -d' ' -f1)
MATRIX_STAMPS := $(foreach core,$(MATRIX_CORES),build/matrix-$(core)/.installed-$(MATRIX_SUM))

.PHONY: demo test setup lint sanity unit integration molecule matrix benchmark lock clean

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

test: setup lint sanity unit integration molecule matrix

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

# One venv per release of MATRIX_CORES, installed once per requirements-matrix.lock (as .venv is).
build/matrix-%/.installed-$(MATRIX_SUM): requirements-matrix.lock
	test -x build/matrix-$*/bin/python || $(PYTHON) -m venv build/matrix-$*
	build/matrix-$*/bin/python -m pip install --disable-pip-version-check --quiet ansible-core==$* -r requirements-matrix.lock
	rm -f build/matrix-$*/.installed-*
	touch $@

# The integration suite's core (tests marked `matrix`: certificate_info, the audit and remediation
# playbooks, readiness_check, check mode, how the runner reaches PowerShell) with each of MATRIX_CORES;
# `make integration` runs the whole suite with 2.19. Stops at the first release that fails.
matrix: $(MATRIX_STAMPS) $(COLLECTION_LINK)
	for core in $(MATRIX_CORES); do \
	  echo "== ansible-core $$core: pytest -m matrix tests/integration"; \
	  build/matrix-$$core/bin/python -m pytest -q -n 2 -m matrix tests/integration || exit 1; \
	done

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
