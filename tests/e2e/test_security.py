"""Security end to end: allowed-commands enforced by real workers (and pinned against the
database), and no database password or dashboard token in any log, output, metric or page."""

from __future__ import annotations

import contextlib
import http.client
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends import open_backend, scrub, secrets_of
from queuectl.backends.base import Backend
from tests.conftest import Cli
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "S3cr3t-pw"  # Postgres here trusts local connections: any password is accepted
TOKEN = "tok-Zq81-dashboard"
REFUSED = "command not allowed by allowed-commands"


@contextlib.contextmanager
def database(url: str) -> Iterator[Backend]:
    backend = open_backend(url)
    try:
        yield backend
    finally:
        backend.close()


def states(url: str) -> dict[str, str]:
    with database(url) as b:
        return {j.id: str(j.state) for j in b.list_jobs(limit=1000)}


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


def scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    return conn.getresponse().read().decode()


def scrape_with(port: int, line: str) -> str:
    """The metrics page once it holds `line`; empty until then."""
    text = scrape(port)
    return text if line in text else ""


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:  # all at once: each takes a moment to drain
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(timeout=20) for proc in procs] == [0] * len(procs)


def test_workers_run_only_allowed_commands_and_a_pin_the_database_cannot_widen(
    cli: Cli, tmp_path: Path
) -> None:
    tmp = tmp_path
    # config set: bad lists are refused with one line and change nothing
    for bad in ("echo *", "[]"):
        one_line_error(cli("config", "set", "allowed-commands", bad), 2)
    with database(cli.url) as db:
        assert "allowed-commands" not in db.get_settings()
    listed = f'["echo *", "touch {tmp}/ok-*"]'
    assert cli("config", "set", "allowed-commands", listed).returncode == 0
    assert cli.json("config", "list", "--json")["allowed-commands"] == listed

    # enqueue refuses what the list forbids (single, bulk, schedule), inserting nothing
    one_line_error(cli("enqueue", "-c", f"echo hi; touch {tmp}/pwned"), 2)
    bulk = tmp / "jobs.ndjson"
    bulk.write_text('{"command": "echo one"}\n{"command": "echo $(id)"}\n')
    assert "job 2 of the input" in one_line_error(cli("enqueue", "--file", str(bulk)), 2)
    one_line_error(cli("schedule", "add", "s", "--cron", "@daily", "-c", "id"), 2)
    assert states(cli.url) == {}
    cli.enqueue({"id": "a", "command": "echo hello world"})

    # whoever writes the database can insert anything: the worker is the guarantee
    with database(cli.url) as db:
        db.enqueue(
            [
                models.JobSpec(id="b", command=f"echo hi; touch {tmp}/pwned-b"),
                models.JobSpec(id="c", command=f"echo $(touch {tmp}/pwned-c)"),
                models.JobSpec(id="d", command=f"touch {tmp}/ok-d"),  # the pin forbids it
            ]
        )
    port = free_port()
    pinned = cli.popen(
        "worker", "start", "--metrics-port", str(port), QUEUECTL_ALLOWED_COMMANDS='["echo *"]'
    )
    try:
        done = {"a": "completed", "b": "dead", "c": "dead", "d": "dead"}
        wait_for(lambda: states(cli.url) == done, timeout=30)
        # the attacker widens the database's list: the worker's own pin still holds
        assert cli("config", "set", "allowed-commands", "none").returncode == 0
        cli.enqueue({"id": "e", "command": f"touch {tmp}/pwned-e"})
        wait_for(lambda: states(cli.url).get("e") == "dead", timeout=30)
        # counted as the job's thread ends, a moment after its result is written
        refused = 'queuectl_jobs_completed_total{outcome="refused",queue="default"} 4.0'
        metrics = wait_for(lambda: scrape_with(port, refused), timeout=10)
    finally:
        stop(pinned)
    assert 'queuectl_jobs_completed_total{outcome="succeeded",queue="default"} 1.0' in metrics
    shown = cli.json("show", "b", "--json")
    assert shown["attempts"] == 1 and shown["max_retries"] == 3  # retries could not help
    assert [(r["outcome"], r["exit_code"]) for r in shown["runs"]] == [("refused", None)]
    assert shown["runs"][0]["error"] == shown["last_error"]
    assert shown["last_error"] == f"{REFUSED} (pinned on this worker)"
    assert "it was not run" in cli("logs", "b").stdout
    assert "job_refused" in cli.log(pinned)

    # without a pin the database's list rules alone; a refused job runs once it is allowed
    assert cli("config", "set", "allowed-commands", f'["touch {tmp}/ok-*"]').returncode == 0
    with database(cli.url) as db:
        db.enqueue(
            [
                models.JobSpec(id="f", command=f"touch {tmp}/ok-f"),
                models.JobSpec(id="g", command="echo not listed any more"),
            ]
        )
    assert cli("dlq", "retry", "d").returncode == 0
    burst = cli("worker", "start", "--burst", timeout=60)
    assert burst.returncode == 0, burst.stderr
    final = states(cli.url)
    assert {k: final[k] for k in "dfg"} == {"d": "completed", "f": "completed", "g": "dead"}
    assert cli.json("show", "g", "--json")["last_error"] == REFUSED
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(("ok-", "pwned"))) == [
        "ok-d",
        "ok-f",
    ]


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


class Http:
    """A dashboard client that keeps every response, headers and body, for the leak check."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[str] = []

    def __call__(
        self, method: str, path: str, *, token: str | None = TOKEN, body: str | None = None
    ) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        if path.startswith("/login"):
            # the one response that hands the token back: as the cookie the browser asked for
            assert f"queuectl_token={TOKEN}" in (response.getheader("set-cookie") or "")
        else:
            self.seen.append(str(response.getheaders()))
        self.seen.append(text)
        return response.status, text


def test_no_password_or_token_in_logs_output_metrics_errors_or_pages(
    cli: Cli, tmp_path: Path
) -> None:
    postgres = cli.url.startswith("postgresql")
    if postgres:
        cli = Cli(with_password(cli.url), tmp_path)
    cli.enqueue({"id": "ok", "command": "echo fine"})
    cli.enqueue({"id": "bad", "command": "echo oops >&2; exit 3", "max_retries": 0})
    wport, oport, dport = free_port(), free_port(), free_port()
    debug = ("--log-level", "debug")
    worker = cli.popen(
        "--log-format", "json", *debug, "worker", "start", "--metrics-port", str(wport)
    )
    orch = cli.popen(
        "--log-format", "console", *debug, "orchestrator", "run", "--metrics-port", str(oport)
    )
    # bound beyond loopback: the token is required, and every mutation needs it and CSRF
    dash = cli.popen(
        "--log-format", "json", *debug, "dashboard", "--host", "0.0.0.0", "--port", str(dport),
        QUEUECTL_DASHBOARD_TOKEN=TOKEN,
    )  # fmt: skip
    web = Http(dport)
    seen: list[str] = []
    try:
        wait_for(lambda: states(cli.url) == {"ok": "completed", "bad": "dead"}, timeout=30)
        wait_for(lambda: _answers(web), timeout=30)
        for page in ("/", "/jobs", "/jobs/bad", "/dlq", "/workers", "/schedules", "/metrics"):
            assert web("GET", page)[0] == 200, page
        assert web("GET", "/jobs/nope")[0] == 404
        assert web("GET", "/jobs?state=bogus")[0] == 400
        assert web("GET", "/healthz", token=None)[0] == 200
        assert web("GET", "/", token=None)[0] == 401
        assert web("GET", "/", token="wrong-token")[0] == 401
        assert web("GET", f"/login?token={TOKEN}", token=None)[0] == 303
        assert web("POST", "/jobs/bad/retry", token=None, body="csrf=x")[0] == 401
        assert web("POST", "/jobs/bad/retry", body="csrf=x")[0] == 403  # no CSRF cookie
        assert states(cli.url)["bad"] == "dead"  # neither POST changed anything
        seen += [scrape(wport), scrape(oport)]
        for args in (
            ["status"],
            ["status", "--json"],
            ["worker", "list", "--json"],
            ["config", "list"],
            ["config", "list", "--json"],
        ):
            result = cli(*args)
            assert result.returncode == 0, (args, result.stderr)
            seen += [result.stdout, result.stderr]
    finally:
        stop(worker, orch, dash)
    logs = [cli.log(p) for p in (worker, orch, dash)]
    assert all("process_starting" in log for log in logs)
    if postgres:
        assert "postgres:***@127.0.0.1" in logs[0]  # the URL is logged, redacted
    seen += logs + web.seen

    # errors that quote a URL: unreachable port, unknown database, a URL libpq cannot parse
    bad_urls = [("sqlite://user:S3cr3t-pw@host/q.db", 2)]
    if postgres:
        bad_urls += [
            (f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x", 69),
            (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db", 69),
            (f"postgresql://postgres:{PASSWORD}@[::1/x", 1),
            (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/x?password={PASSWORD}&port=z", 69),
        ]
    for url, code in bad_urls:
        seen.append(one_line_error(cli("--db", url, "status"), code))
    if postgres:
        down = cli("--db", bad_urls[1][0], "--log-format", "json", "worker", "start", "--burst")
        seen.append(one_line_error(down, 69))

    leaks = [text for text in seen if PASSWORD in text or TOKEN in text]
    assert not leaks
    assert len(seen) > 20  # the check above looked at everything it meant to


def _answers(web: Http) -> bool:
    try:
        return web("GET", "/healthz", token=None)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize(
    ("message", "url", "shown"),
    [
        # libpq quotes a URL it cannot parse whole, and a bad percent-escape on its own
        (
            'in URI: "postgresql://postgres:S3cr3t-pw@[::1/test"',
            "postgresql://postgres:S3cr3t-pw@[::1/test",
            'in URI: "postgresql://postgres:***@[::1/test"',
        ),
        (
            'invalid percent-encoded token: "p%zzS3cr3t"',
            "postgresql://u:p%zzS3cr3t@h/db",
            'invalid percent-encoded token: "***"',
        ),
        # a stray `@`: libpq takes the rest of the password for the host name
        (
            "failed to resolve host 'ret9@127.0.0.1'",
            "postgresql://u:S3c@ret9@127.0.0.1/db",
            "failed to resolve host '***@127.0.0.1'",
        ),
        ("password=S3cr3t host=h", "", "password=*** host=h"),
        ("to postgres://a:b@h/x failed", "", "to postgres://a:***@h/x failed"),
        ('database "nosuch" does not exist', "postgresql://u:pw@h/db", None),
        # the compose defaults: user, password and database all the same, and not secret
        (
            'database "queuectl" does not exist',
            "postgresql://queuectl:queuectl@postgres:5432/queuectl",
            None,
        ),
        (
            "connection to postgresql://queuectl:queuectl@postgres/queuectl failed",
            "postgresql://queuectl:queuectl@postgres:5432/queuectl",
            "connection to postgresql://queuectl:***@postgres/queuectl failed",
        ),
    ],
)
def test_driver_messages_are_scrubbed(message: str, url: str, shown: str | None) -> None:
    assert scrub(message, secrets_of(url)) == (message if shown is None else shown)
