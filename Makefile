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

# The container tests (tests/deploy: ~6 min, mostly waiting on Docker) run in a second pytest
# beside the groups that time nothing against the wall clock (unit, contract, integration and
# the e2e files below: input handling, completion, the operator's CLI, metrics and database
# faults, which wait for outcomes with generous deadlines but assert no latency; not
# test_orphans, whose lifeline must kill within 3 s, and missed it here once under the load);
# the timed e2e files, the browser tests and the races then run alone. Serially the suite
# took 21 min here.
UNTIMED_E2E := test_bad_input test_hostile_input test_security test_terminal_injection \
  test_bulk_enqueue test_operator_cli test_schedule_run test_completion test_metrics_endpoints \
  test_prometheus_server test_resilience test_db_faults
test: lint  ## the whole suite: unit, contract and e2e on SQLite and Postgres
	@export QUEUECTL_TEST_DATABASE_URL=$${QUEUECTL_TEST_DATABASE_URL:-$(PG_URL)}; \
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=5 tests/deploy > .deploy-tests.log 2>&1 & \
	deploy=$$!; \
	$(VENV)/bin/pytest -q --durations=5 tests/unit tests/contract tests/integration \
	  $(foreach f,$(UNTIMED_E2E),tests/e2e/$(f).py); first=$$?; \
	wait $$deploy; containers=$$?; echo "--- tests/deploy (run beside the above)"; \
	cat .deploy-tests.log; \
	$(VENV)/bin/pytest -q --durations=10 tests/web tests/e2e \
	  $(foreach f,$(UNTIMED_E2E),--ignore=tests/e2e/$(f).py); timed=$$?; \
	echo "exit codes: untimed $$first, containers $$containers, timed $$timed"; \
	[ $$first -eq 0 ] && [ $$containers -eq 0 ] && [ $$timed -eq 0 ]

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
