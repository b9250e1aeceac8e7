"""queuectl from Python: enqueue jobs, let a worker run them, wait, read their output."""

import subprocess
import sys
from datetime import timedelta

from queuectl import Client, errors

# the database the CLI would use: --db URL, else QUEUECTL_DATABASE_URL, else the config
# file, else a SQLite file in the user data dir
with Client() as q:
    hello = q.enqueue("echo hello from $QUEUECTL_JOB_ID", id="hello", queue="mail")
    q.enqueue("echo broken >&2; exit 3", id="flaky", max_retries=0, timeout="30s")
    q.enqueue("echo tomorrow", id="later", delay=timedelta(days=1))
    print(hello.id, hello.state, hello.queue)

    # a worker in burst mode runs every job that is due, then exits
    subprocess.run([sys.executable, "-m", "queuectl", "worker", "start", "--burst"], check=True)

    for job in q.wait(["hello", "flaky"], timeout=60):
        print(job.id, job.state, job.exit_code)
    print(q.logs("hello"), end="")
    print(q.logs("flaky", attempt=1), end="")

    try:
        q.wait("later", timeout=0.2)
    except errors.WaitTimeout as exc:
        print("not finished:", exc.unfinished, "exit code", exc.exit_code)
    print(q.cancel("later").state)

    try:
        q.enqueue("echo hi", queue="no spaces")
    except errors.UsageError as exc:
        print("refused:", exc, "exit code", exc.exit_code)
    print(len(q.list()), "jobs,", q.status().dlq, "in the DLQ")
