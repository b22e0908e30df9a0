# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.9.5
PYTEST_ARGS ?=

.PHONY: demo test lint format system redis browser venv bench ui stack stack-down clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Debian packages: OpenSSH's sshd (SFTP tests and demo); Chromium for the UI browser test.
system:
	@if [ ! -x /usr/sbin/sshd ]; then \
		echo "installing openssh-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	fi

# Debian's redis-server: the Celery broker of `make stack` and of the stack tests.
redis:
	@if [ ! -x /usr/bin/redis-server ]; then \
		echo "installing redis-server (the stack's Celery broker)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi

browser:
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium (the UI test drives it headless)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

demo: venv system
	$(BIN)/python -m dev.demo

# Optional: the Airflow UI locally (airflow standalone) with the project's DAGs.
ui: venv
	$(BIN)/python -m dev.ui

# Airflow on CeleryExecutor with two workers and every demo system, in the background; see README "Runbook".
stack: venv system redis
	$(BIN)/python -m dev.stack up

stack-down:
	$(BIN)/python -m dev.stack down

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv system redis browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark on a quiet machine (several minutes): bench/results/<date>.json and docs/performance.md.
# BENCH_ARGS="--quick" for a smoke run, "--only visits movies" for some; one alone: .venv/bin/python -m bench.<name>
BENCH_ARGS ?=
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
