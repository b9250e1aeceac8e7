"""`queuectl bench`: benchmarks beside the product, never imported by it.

harness.py runs the sections (drain, pickup, enqueue, cli, peers, history, matrix) through the
CLI and the backends like any user; seed.py writes and deletes the benchmark's own rows in its
own SQL; baresql.py is the bare-SQL SKIP LOCKED ceiling; peers.py drives PGQueuer and
Procrastinate from their own venv (a script: it imports no queuectl module). Only
queuectl/cli/bench_cmd.py imports this package, inside the command; import-linter checks it.
"""
