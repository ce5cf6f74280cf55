# One-command entry points. `make test` works on a fresh Debian or Ubuntu machine: `make setup`
# installs what the tests need (missing Debian tools, venv with pinned packages, npm linter).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: test setup lint fmt unit render bench system-deps clean oracles oracles-toolchain e2e e2e-toolchain

test: setup lint unit

unit: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# Fix what ruff can fix and format the code the way `make lint` checks it.
fmt: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

render: setup
	$(PY) -m components render --stack $(STACK)

# Figures, not pass/fail: render time, sizes against their limits, an emulated image build.
bench: setup
	$(PY) scripts/bench.py

# Upstream tools as test oracles (helm, Talos's config loader per minor), built from the Go
# module proxy into ~/.cache/hcloud-talos-autoscaler (scripts/toolchain.toml pins them).
oracles-toolchain:
	$(PYTHON) scripts/toolchain.py build oracles

oracles: setup
	$(PY) -m pytest tests/oracles --oracles

# The real Pulumi engine's pieces (CLI, language host, providers, etcd, kube-apiserver): probe,
# then build (what the proxy refuses, from ../shared/upstream-src).
e2e-toolchain:
	scripts/e2e-toolchain

# This project's program (dev and prod stacks) through the real engine against a real API server
# and the Hetzner emulator, driven by `pulumi` commands as the README gives them (needs
# `make e2e-toolchain`).
e2e: setup
	$(PY) -m pytest tests/e2e --e2e

setup: system-deps $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Only the missing tools, each by its own package (see scripts/system_deps.py --dry-run).
system-deps:
	$(PYTHON) scripts/system_deps.py

clean:
	rm -rf $(VENV) node_modules render .pytest_cache .mypy_cache .ruff_cache
