"""Workers under stress: few file descriptors, very fast heartbeats, a lost database."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cli, _admin
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def _bulk(cli: Cli, n: int, command: str = "true") -> None:
    lines = "".join(json.dumps({"command": command}) + "\n" for _ in range(n))
    assert cli("enqueue", "-", input=lines).returncode == 0


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_many_jobs_under_a_low_file_descriptor_limit(cli: Cli, tmp_path: Path) -> None:
    _bulk(cli, 400)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.run(
            [sys.executable, "-m", "queuectl", "worker", "start", "--count", "4", "--burst"],
            env=cli.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_low_fd_limit,
            timeout=120,
        )
    assert worker.returncode == 0, log.read_text()[-2000:]
    assert cli.json("status", "--json")["jobs"]["completed"] == 400
    assert "Traceback" not in log.read_text()


def test_very_fast_heartbeats_never_crash_the_worker(cli: Cli) -> None:
    _bulk(cli, 300, "echo hi")
    worker = cli.popen(
        "worker",
        "start",
        "--count",
        "4",
        "--burst",
        QUEUECTL_HEARTBEAT="0.005",
        QUEUECTL_RECOVERY_EVERY="0.05",
    )
    assert worker.wait(timeout=120) == 0, cli.log(worker)[-2000:]
    assert cli.json("status", "--json")["jobs"]["completed"] == 300
    log = cli.log(worker)
    assert "heartbeat_crashed" not in log
    assert "Traceback" not in log


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_cut_off_from_postgres_kills_its_job_before_it_is_recovered(
    pg_url: str, postgres_url: str, tmp_path: Path
) -> None:
    """Fencing: the job must not run twice at once, even while the cut-off worker lives."""
    role = f"queuectl_fence_{uuid.uuid4().hex[:8]}"
    _admin(
        pg_url,
        f"CREATE ROLE {role} LOGIN",
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    base, _, rest = pg_url.partition("://")
    cut_off_url = f"{base}://{role}@{rest.split('@', 1)[1]}"
    marker = tmp_path / "marker.txt"
    command = (
        f"echo start-$QUEUECTL_ATTEMPT >> {marker}; "
        '[ "$QUEUECTL_ATTEMPT" = 1 ] && sleep 40; '
        # the second attempt looks for a live first one: that would be a double execution
        f"grep -qa 'QUEUECTL_LEASE=fenced#1' /proc/[0-9]*/environ 2>/dev/null "
        f"&& echo overlap >> {marker}; echo end-$QUEUECTL_ATTEMPT >> {marker}"
    )
    cli = Cli(pg_url, tmp_path)
    cli.enqueue({"id": "fenced", "command": command})
    # another "host": its orphan cannot be killed by the other worker, only by itself
    doomed_cli = Cli(cut_off_url, tmp_path)
    doomed = doomed_cli.popen("worker", "start", QUEUECTL_HOSTNAME="elsewhere")
    try:
        wait_for(lambda: marker.exists() and "start-1" in marker.read_text(), timeout=20)
        _admin(
            pg_url,
            f"ALTER ROLE {role} NOLOGIN",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        )
        rescuer = cli.popen("worker", "start")
        try:
            wait_for(lambda: "end-2" in marker.read_text(), timeout=40)
        finally:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.wait(timeout=20)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        _admin(pg_url, f"DROP OWNED BY {role}")
        _admin(postgres_url, f"DROP ROLE IF EXISTS {role}")
    assert marker.read_text().split() == ["start-1", "start-2", "end-2"]
    assert "job_fenced" in doomed_cli.log(doomed)
