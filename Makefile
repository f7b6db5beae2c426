# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pyenv's `python3` is a shim (+60 ms a start): build the venv from the real interpreter.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test lint unit bench bench-quick bench-peers clean awscli

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,trio,bench]'
	@touch $(STAMP)

venv: $(STAMP)

## Set up and start the daemon in the foreground with examples/ deployed.
run: venv
	@echo "Lambda API on http://127.0.0.1:9001 -- get a key with: $(VENV)/bin/lambdad keys create --admin"
	$(VENV)/bin/lambdad serve --examples examples --api 127.0.0.1:9001

## Set up and pass the whole suite: ruff, mypy (strict), pytest.
test: venv lint awscli
	$(PY) -m pytest -q

# api-ops (issue 11): the AWS CLI the Lambda API tests drive -- Debian's awscli is v2.
# (Belongs in the system package list, scripts/system-packages, once that exists here.)
awscli:
	@command -v /usr/bin/aws >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends awscli; }

lint: venv
	$(VENV)/bin/ruff check lambdad sandbox tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

unit: venv
	$(PY) -m pytest -q tests/protocol tests/lambdad

## The benchmark harness (SPEC §10): table, JSON and plots under benchmarks/results/.
bench: venv
	$(PY) -m benchmarks

bench-quick: venv
	$(PY) -m benchmarks --quick

## Debian's peers for the same-run baselines (bwrap, crun, runc, firejail).
bench-peers:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap crun runc firejail procps

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
