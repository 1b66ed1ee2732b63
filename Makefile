# The README's two commands are `make run` and `make test`; everything else supports them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
EXTRAS ?= dev,test,bench

.PHONY: setup run coordinator test check proto bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	@bash tools/system_deps.sh
	@touch $@

## Start the devnet on the embedded defaults: coordinator + 2 miner agents (SQLite under ./data, no Redis).
run: setup
	$(VENV)/bin/aitbc devnet

## Only the coordinator (gRPC + REST), same defaults.
coordinator: setup
	$(VENV)/bin/aitbc-coordinator

## Run the whole test suite.
test: setup
	$(VENV)/bin/pytest

## Contract checks: buf lint/format/breaking, generated code, googleapis copy, OpenAPI copy.
check: setup
	$(PY) tools/check_contracts.py

## Regenerate gen/ from proto/ (and refresh the googleapis copy and the OpenAPI golden file).
proto: setup
	$(PY) tools/sync_googleapis.py
	buf format -w
	buf generate
	$(PY) tools/write_openapi.py

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
