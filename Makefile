# One-command entry points. `make test` works on a fresh Debian machine: it installs
# what the tests need (venv, pinned pip packages, npm workflow linter, openssh-server).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: test lint unit render bench install system-deps clean

test: install lint unit

unit: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

render: install
	$(PY) -m components render --stack $(STACK)

# Figures, not pass/fail: render time, sizes against their limits, an emulated image build.
bench: install
	$(PY) scripts/bench.py

install: system-deps $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The image-builder tests run a real OpenSSH server as the "rescue system".
system-deps:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v xz >/dev/null || ! command -v npm >/dev/null; then \
		echo "installing openssh-server, xz-utils and npm (Debian packages)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server xz-utils npm >/dev/null; \
	fi

clean:
	rm -rf $(VENV) node_modules render .pytest_cache .mypy_cache .ruff_cache
