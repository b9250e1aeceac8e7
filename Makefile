# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: demo test lint unit venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set every CLI call
# would recompile queuectl's modules (~30 ms); compileall writes only what changed.
venv: $(VENV)/.installed
	@$(PY) -m compileall -q queuectl

demo: venv  ## a real demo on the embedded SQLite default
	PY=$(PY) scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff format --check queuectl tests benchmarks
	$(VENV)/bin/ruff check queuectl tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache  # the layers of [tool.importlinter] in pyproject.toml

unit: venv  ## no services needed
	$(VENV)/bin/pytest -q tests/unit

test: lint  ## the whole suite: unit, contract and e2e on SQLite and Postgres
	QUEUECTL_TEST_DATABASE_URL=$${QUEUECTL_TEST_DATABASE_URL:-$(PG_URL)} \
	  $(VENV)/bin/pytest -q --durations=10 tests

clean:
	rm -rf $(VENV) demo-data .mypy_cache .ruff_cache .pytest_cache

# Competitors for `queuectl/bench/peers.py`, in their own venv: never our dependencies.
PEERS_VENV ?= .venv-peers
.PHONY: bench-peers-env
bench-peers-env:  ## PGQueuer and Procrastinate, pinned, for the side-by-side drain rates
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet 'pgqueuer[asyncpg,psycopg]==1.6.0' \
	  'asyncpg==0.32.0' 'procrastinate==3.10.0' 'psycopg[binary,pool]==3.3.9' 'matplotlib==3.9.2'
