#!/usr/bin/env bash
# `make demo`: a real run on the embedded SQLite default, in a throwaway data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export XDG_DATA_HOME="$PWD/demo-data"   # the default database lands in demo-data/queuectl/
rm -rf demo-data
q() { echo "\$ queuectl $*"; "$PY" -m queuectl "$@"; }

echo "== enqueue: a job that succeeds, one that fails, one that is not a command, one delayed"
q enqueue '{"id": "hello", "command": "echo hello from $QUEUECTL_JOB_ID; uname -s"}'
q enqueue '{"id": "flaky", "command": "echo trying; exit 3", "max_retries": 2}'
q enqueue '{"id": "typo", "command": "ech0 oops", "max_retries": 0}'
q enqueue --id later --delay 2s --priority 5 --command 'echo I waited'
q config set backoff-base 2
echo
echo "== a burst worker with 2 slots runs until nothing is due or waiting to retry"
echo "   (flaky retries after 2 s and 4 s, then lands in the DLQ)"
q --log-format console worker start --count 2 --burst 2>&1 | grep -E "job_finished|worker_st" \
  | sed -E 's/^[0-9T:.-]+Z //'
echo
q status
echo
q list
echo
q dlq list
echo
q show flaky
echo
q logs hello
q logs later
echo
echo "demo database: $XDG_DATA_HOME/queuectl/queuectl.db (delete demo-data/ to start over)"
