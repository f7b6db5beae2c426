# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pyenv's `python3` is a shim (+60 ms a start): build the venv from the real interpreter.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed-stamp
# The system packages (Debian) lambdad needs: one list, scripts/system-packages. Each stamp is
# made once the packages of its scope are installed, so a second `make test` never runs apt.
SYSTEM_PACKAGES := scripts/system-packages
# Today's list (tests/test_system_packages.py keeps this line equal to the file):
# installs: python3-venv nftables iproute2 libcap2-bin systemd awscli nodejs curl gcc nats-server
SYSTEM_STAMP = $(VENV)/.system-$(1)-stamp

.PHONY: venv system-packages run test lint unit install uninstall bench bench-quick bench-peers clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,trio,bench]'
	@touch $(STAMP)

venv: $(STAMP)

# `run`: what the daemon needs; `test`: that and what the test suite needs.
$(VENV)/.system-%-stamp: $(SYSTEM_PACKAGES) scripts/install-system-packages
	@scripts/install-system-packages $* $(SYSTEM_PACKAGES)
	@mkdir -p $(VENV) && touch $@

system-packages: $(call SYSTEM_STAMP,test)

## Set up and start the daemon in the foreground with examples/ deployed.
run: $(call SYSTEM_STAMP,run) venv
	@echo "HTTP gateway on http://127.0.0.1:9002; Lambda API on http://127.0.0.1:9001 -- get a key with: $(VENV)/bin/lambdad keys create --admin"
	$(VENV)/bin/lambdad serve --examples examples --api 127.0.0.1:9001 --gateway 127.0.0.1:9002

## Set up and pass the whole suite: ruff, mypy (strict), pytest.
test: $(call SYSTEM_STAMP,test) venv lint
	$(PY) -m pytest -q

## Install as a systemd service: a venv under $(PREFIX), the unit, sysusers and tmpfiles
## snippets, /etc/lambdad/lambdad.toml if absent. DESTDIR=dir stages it (scripts/install).
PREFIX ?= /opt/lambdad
install:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) PYTHON=$(PYTHON) scripts/install

uninstall:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) scripts/uninstall

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

## Debian's peers for the same-run baselines (bwrap, crun, runc, firejail), and
## serverless-offline 13 under Serverless Framework 3 for the http scenario (npm, into a cache
## directory that is not committed).
SLS_DIR := benchmarks/.cache/serverless-offline
bench-peers:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap crun runc firejail procps
	command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
	mkdir -p $(SLS_DIR) && test -f $(SLS_DIR)/package.json || echo '{"name": "lambdad-bench-serverless-offline", "private": true}' > $(SLS_DIR)/package.json
	@# Installed already (both packages at their major version): nothing to fetch again.
	@node -e 'const v = (p) => require("./$(SLS_DIR)/node_modules/" + p + "/package.json").version.split(".")[0]; process.exit(v("serverless") === "3" && v("serverless-offline") === "13" ? 0 : 1)' 2>/dev/null \
	  || (cd $(SLS_DIR) && npm install --no-audit --no-fund serverless@3 serverless-offline@13)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

## ---- The python runtime's SDK (issue 10) -------------------------------------------------
## boto3, botocore & co. as Lambda's python runtime provides them: pinned in
## sandbox/runtimes/python-sdk.txt, installed from PyPI into build/python-sdk/<X.Y>, which
## every python sandbox sees read-only at /var/runtime. Rebuilt when the pins change.
PY_SDK := build/python-sdk
PY_SDK_REQS := sandbox/runtimes/python-sdk.txt
PY_SDK_STAMP := $(PY_SDK)/.installed-stamp

.PHONY: python-sdk
## One tree per Python the host runs functions on (lambdad's own and the other python3.X
## interpreters it found: sandbox/runtimes/__init__.py); the pins are pure-Python wheels.
$(PY_SDK_STAMP): $(PY_SDK_REQS) $(STAMP) Makefile
	@for pair in $$($(PY) -c 'from sandbox import runtimes; import sys; print(" ".join(["%d.%d=%s" % (*sys.version_info[:2], sys.executable), *(n[6:] + "=" + p for n, p in runtimes.python_interpreters().items())]))'); do \
	ver=$${pair%%=*} && interpreter=$${pair#*=} && \
	rm -rf "$(PY_SDK)/$$ver.tmp" && \
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-compile \
		--python-version "$$ver" --only-binary=:all: \
		--target "$(PY_SDK)/$$ver.tmp" -r $(PY_SDK_REQS) && \
	"$$interpreter" -m compileall -q -j 0 "$(PY_SDK)/$$ver.tmp" >/dev/null && \
	rm -rf "$(PY_SDK)/$$ver" && mv "$(PY_SDK)/$$ver.tmp" "$(PY_SDK)/$$ver" && \
	echo "python$$ver runtime SDK: $$(grep -v '^#' $(PY_SDK_REQS) | tr '\n' ' ')" || exit 1; \
	done
	@touch $@

python-sdk: $(PY_SDK_STAMP)
run test: python-sdk
## ---- end of the python runtime's SDK --------------------------------------------------------
