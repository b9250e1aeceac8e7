"""Issue 19, the dashboard under attack: DNS rebinding (Host and Origin), non-ASCII tokens,
/login with a wrong token, security headers, weak tokens beyond loopback, job ids `.`/`..`."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from queuectl import models
from queuectl.backends.base import Backend
from tests.conftest import Cli
from tests.e2e.waiting import wait_for
from tests.web.test_http import client, csrf, finish

PAGES = ("/", "/jobs", "/jobs/a", "/queues", "/dlq", "/workers", "/schedules", "/jobs/missing")


# --- a real server, spoken to with raw HTTP (any Host, any bytes) -----------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str


def request(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str | bytes] | None = None,
    body: str | None = None,
) -> Reply:
    """One request with exactly these headers: http.client lets a test forge `Host` (as a
    rebinding browser sends it) and put non-ASCII bytes in a header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        fields: dict[str, str | bytes] = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        if body is not None:
            fields["Content-Type"] = "application/x-www-form-urlencoded"
            fields["Content-Length"] = str(len(body.encode()))
        for name, value in fields.items():
            conn.putheader(name, value)
        conn.endheaders(body.encode() if body is not None else None)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read().decode(errors="replace"))
    finally:
        conn.close()


@contextmanager
def dashboard(cli: Cli, *args: str, **env: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = cli.popen("dashboard", "--port", str(port), *args, **env)

    def up() -> bool:
        assert proc.poll() is None, cli.log(proc)
        try:
            return request(port, "GET", "/healthz").status == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def csrf_pair(port: int, headers: Mapping[str, str | bytes] | None = None) -> tuple[str, str]:
    """The CSRF cookie a page hands out and the token its forms carry (the same value)."""
    reply = request(port, "GET", "/workers", headers)
    assert reply.status == 200, reply.body
    cookie = re.search(r"queuectl_csrf=([^;]+)", reply.headers.get("set-cookie", ""))
    field = re.search(r'name="csrf-token" content="([^"]+)"', reply.body)
    assert cookie and field
    return cookie.group(1), field.group(1)


# --- 1. DNS rebinding: the Host header, and Origin on POST -----------------------------------


def test_a_forged_host_reads_nothing_and_stops_no_worker(backend: Backend, cli: Cli) -> None:
    """A page on rebind.attacker.example whose name now resolves to 127.0.0.1 talks to the
    dashboard with its own name in Host (and Origin): refused before anything is read or
    done, even holding a valid CSRF cookie and token."""
    backend.enqueue([models.JobSpec(command="echo the-secret-command", id="s1")])
    workers = [models.WorkerInfo(id=f"w{i}", host="h", pid=i, queues=()) for i in (1, 2)]
    backend.heartbeat(workers, [], lease_ttl_s=300)

    def stopping() -> set[str]:
        return {w.id for w in backend.list_workers(lease_ttl_s=300) if w.stopping}

    with dashboard(cli, QUEUECTL_LEASE_TTL="300") as (port, _):
        evil: dict[str, str | bytes] = {"Host": f"rebind.attacker.example:{port}"}
        for page in ("/", "/jobs", "/jobs/s1", "/workers", "/metrics"):
            reply = request(port, "GET", page, evil)
            assert reply.status == 400, page
            assert "the-secret-command" not in reply.body
            assert "queuectl_csrf" not in reply.headers.get("set-cookie", "")
        cookie, token = csrf_pair(port)  # a valid pair, however the page came by one
        form = f"csrf={token}"
        with_cookie = {"Cookie": f"queuectl_csrf={cookie}"}
        evil_post = {**evil, **with_cookie, "Origin": f"http://rebind.attacker.example:{port}"}
        assert request(port, "POST", "/workers/stop", evil_post, form).status == 400
        assert request(port, "POST", "/workers/stop", {**evil, **with_cookie}, form).status == 400
        # the right Host but another origin (cookie tossing from another port, a sandboxed
        # frame's "null"): refused too
        for origin in (f"http://rebind.attacker.example:{port}", "http://127.0.0.1:1", "null"):
            post = {**with_cookie, "Origin": origin}
            assert request(port, "POST", "/workers/stop", post, form).status == 403, origin
        assert stopping() == set()
        # the control: the dashboard's own names, with and without Origin, work
        assert "the-secret-command" in request(port, "GET", "/jobs").body
        local = {"Host": f"localhost:{port}"}
        assert "the-secret-command" in request(port, "GET", "/jobs/s1", local).body
        own = {**with_cookie, "Origin": f"http://127.0.0.1:{port}"}
        assert request(port, "POST", "/workers/w1/stop", own, form).status == 303
        assert stopping() == {"w1"}
        assert request(port, "POST", "/workers/stop", with_cookie, form).status == 303
        assert stopping() == {"w1", "w2"}


def test_allowed_hosts_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    """Bound to 0.0.0.0 the user names the public host (`--allowed-host`, repeatable, or
    QUEUECTL_DASHBOARD_ALLOWED_HOSTS, comma-separated); `*` allows any name."""
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    bearer: dict[str, str | bytes] = {"Authorization": "Bearer a-long-enough-token-42"}
    env = {"QUEUECTL_DASHBOARD_TOKEN": "a-long-enough-token-42"}

    def status(port: int, host: str) -> int:
        return request(port, "GET", "/jobs", {**bearer, "Host": host}).status

    flags = ("--host", "0.0.0.0", "--allowed-host", "Queue.Example.com", "--allowed-host", "b.ex")
    with dashboard(cli, *flags, **env) as (port, _):
        assert status(port, "queue.example.COM.") == 200  # names are case-insensitive
        assert status(port, f"b.ex:{port}") == 200
        assert status(port, f"localhost:{port}") == 200
        assert status(port, f"[::1]:{port}") == 200
        assert status(port, "192.0.2.7") == 200  # an address: the dashboard's own origin
        assert status(port, "rebind.attacker.example") == 400
        assert status(port, "queue.example.com.evil.example") == 400
    with dashboard(cli, QUEUECTL_DASHBOARD_ALLOWED_HOSTS=" a.example , b.example,") as (port, _):
        assert status(port, "a.example") == 200
        assert status(port, "b.example") == 200
        assert status(port, "c.example") == 400
    with dashboard(cli, QUEUECTL_DASHBOARD_ALLOWED_HOSTS="*") as (port, _):
        assert status(port, "rebind.attacker.example") == 200
    bad = cli("dashboard", "--allowed-host", "http://queue.example.com/", timeout=20)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "allowed host" in bad.stderr


def test_allowed_hosts_setting_from_the_environment_or_the_config_file(tmp_path: Path) -> None:
    from queuectl.config import load_settings

    env = {"QUEUECTL_DASHBOARD_ALLOWED_HOSTS": " a.example, b.example:8080 ,,"}
    assert load_settings({}, environ=env).dashboard_allowed_hosts == ("a.example", "b.example:8080")
    toml = tmp_path / "q.toml"
    toml.write_text('dashboard-allowed-hosts = ["c.example", "*"]\n')
    assert load_settings({}, environ={}, path=toml).dashboard_allowed_hosts == ("c.example", "*")
    assert load_settings({}, environ={}, path=None).dashboard_allowed_hosts == ()


def test_the_host_check_in_process(backend: Backend) -> None:
    from queuectl.web.app import create_app
    from queuectl.web.security import allowed_hosts

    app = create_app(backend, allowed_hosts=allowed_hosts("127.0.0.1", ["q.example"]))

    def get(base: str, path: str = "/jobs") -> int:
        with TestClient(app, base_url=base, follow_redirects=False) as c:
            return c.get(path).status_code

    assert get("http://127.0.0.1:8080") == 200
    assert get("http://localhost") == 200
    assert get("http://q.example:9") == 200
    assert get("http://testserver") == 400
    assert get("http://10.1.2.3:8080") == 200  # an address: the dashboard's own origin
    assert get("http://[fe80::1]") == 200
    for path in ("/healthz", "/static/live.js", "/login?token=x"):
        assert get("http://testserver", path) == 400, path  # every path: no exceptions
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as c:
        for host in ("a:b:c", "[::1", "127.0.0.1:x", "", "evil.example:80"):
            assert c.get("/jobs", headers={"Host": host}).status_code == 400, host


# --- 2. non-ASCII tokens and CSRF values: 401/403, never a 500 --------------------------------


def test_non_ascii_tokens_and_csrf_values_are_refused_without_an_error(cli: Cli) -> None:
    # a short token is fine on loopback (only a public bind needs a strong one)
    token = "s3cret"
    good: dict[str, str | bytes] = {"Authorization": f"Bearer {token}"}
    with dashboard(cli, QUEUECTL_DASHBOARD_TOKEN=token) as (port, proc):
        for value in ("ü", "s3cretü", "€€€", "\u202e"):
            raw = value.encode()
            assert request(port, "GET", "/jobs", {"Authorization": b"Bearer " + raw}).status == 401
            assert request(port, "GET", "/jobs", {"Cookie": b"queuectl_token=" + raw}).status == 401
            login = request(port, "GET", "/login?token=" + urllib.parse.quote(value))
            assert login.status == 401
            assert "queuectl_token" not in login.headers.get("set-cookie", "")
            quoted = urllib.parse.quote(value)
            cookie, token_ok = csrf_pair(port, good)
            for jar, form in (
                (b"queuectl_csrf=" + raw, f"csrf={quoted}"),  # both non-ASCII and equal
                (f"queuectl_csrf={cookie}".encode(), f"csrf={quoted}"),
                (b"queuectl_csrf=" + raw, f"csrf={token_ok}"),
            ):
                reply = request(port, "POST", "/workers/stop", {**good, "Cookie": jar}, form)
                assert reply.status == 403, (value, jar, form)
        assert request(port, "GET", "/jobs", good).status == 200
    log = cli.log(proc)
    assert "Traceback" not in log and "Exception" not in log, log


# --- 3. /login checks the token before it sets the cookie ------------------------------------


def test_login_with_a_wrong_token_keeps_the_session(backend: Backend) -> None:
    c = client(backend, token="s3cret")
    assert c.get("/login?token=s3cret").status_code == 303
    assert c.get("/").status_code == 200
    for wrong in ("WRONG", "s3cre", "s3cret ", ""):
        response = c.get("/login", params={"token": wrong})
        assert response.status_code == 401, wrong
        assert "set-cookie" not in response.headers
        assert c.get("/").status_code == 200  # still logged in
    assert client(backend, token="s3cret").get("/login?token=WRONG").status_code == 401


# --- 4. security headers, and pages a strict CSP can render -----------------------------------


def test_every_page_sends_security_headers(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="echo hi", id="a")])
    c = client(backend)
    responses = {page: c.get(page) for page in PAGES}
    responses["401"] = client(backend, token="s3cret").get("/jobs")
    responses["403"] = c.post("/jobs/a/cancel", data={"csrf": "forged"})
    for name, response in responses.items():
        h = response.headers
        assert h["x-frame-options"] == "DENY", name
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, name
        assert "script-src 'self'" in csp and "unsafe" not in csp, name
        assert h["cache-control"] == "no-store", name
        assert h["x-content-type-options"] == "nosniff", name
        assert h["referrer-policy"] == "same-origin", name
    # the pages need nothing the policy forbids: no inline script, style or handler
    for page in PAGES:
        html = c.get(page).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), page
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), page
    assert c.get("/static/style.css").headers["x-content-type-options"] == "nosniff"


# --- 5. a public bind needs a token worth the name --------------------------------------------


@pytest.mark.e2e
def test_the_cli_refuses_a_weak_token_beyond_loopback(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    for weak in ("x", "fifteen-chars-1", "a token with spaces in it", "tab\tinside-long-token"):
        result = cli(
            "dashboard", "--host", "0.0.0.0", "--port", str(free_port()),
            timeout=30, QUEUECTL_DASHBOARD_TOKEN=weak,
        )  # fmt: skip
        assert result.returncode == 2, weak
        assert result.stderr.count("\n") == 1, result.stderr
        assert "QUEUECTL_DASHBOARD_TOKEN" in result.stderr
        assert len(weak) < 8 or weak not in result.stderr  # never echoed


# --- 6. job ids `.` and `..` -------------------------------------------------------------------


def as_browser(href: str) -> str:
    """The path a browser requests for a link: URL parsing (WHATWG) resolves `.` and `..`
    segments, percent-encoded ones included, before anything is sent."""
    path, sep, query = href.partition("?")
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, segment in enumerate(segments):
        plain = segment.lower().replace("%2e", ".")
        last = i == len(segments) - 1
        if plain == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif plain == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out) + sep + query


def test_links_and_forms_work_for_the_ids_dot_and_dot_dot(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="echo dot", id=".", max_retries=0)])
    finish(backend, ".", ok=False)  # dead: in the DLQ
    backend.enqueue([models.JobSpec(command="echo dotdot", id="..")])
    c = client(backend)
    token = csrf(c)

    def link(page: str, job_id: str) -> str:
        html = c.get(page).text
        hrefs = re.findall(r'<a href="([^"]+)">' + re.escape(job_id) + "</a>", html)
        assert hrefs, (page, job_id)
        return as_browser(hrefs[0].replace("&amp;", "&"))

    def shows(path: str, job_id: str) -> str:
        response = c.get(path)
        assert response.status_code == 200, path
        assert f"Job <code>{job_id}</code>" in response.text, path
        return response.text

    for job_id, page in (("..", "/jobs"), (".", "/jobs"), (".", "/dlq")):
        shows(link(page, job_id), job_id)

    def press(job_id: str, label: str) -> None:
        html = shows(link("/jobs", job_id), job_id)
        actions = re.findall(r'<form method="post" action="([^"]+)"[^>]*>\s*<input[^>]*>\s*'
                             r"<button[^>]*>" + label, html)  # fmt: skip
        assert len(actions) == 1, (job_id, label)
        response = c.post(as_browser(actions[0].replace("&amp;", "&")), data={"csrf": token})
        assert response.status_code == 303, (job_id, label, response.text)
        shows(as_browser(response.headers["location"]), job_id)  # back on the job's page

    press("..", "Cancel")
    assert backend.get_job("..").state is models.JobState.CANCELLED
    press("..", "Retry")
    assert backend.get_job("..").state is models.JobState.PENDING
    press(".", "Retry")
    assert backend.get_job(".").state is models.JobState.PENDING
    press(".", "Cancel")
    assert backend.get_job(".").state is models.JobState.CANCELLED
    # the jobs list's own buttons too (they return to the list)
    html = c.get("/jobs").text
    for action in re.findall(r'action="([^"]+/retry[^"]*)"', html):
        assert (
            c.post(as_browser(action.replace("&amp;", "&")), data={"csrf": token}).status_code
            == 303
        )
    assert {backend.get_job(i).state for i in (".", "..")} == {models.JobState.PENDING}


def test_schedule_and_worker_buttons_work_for_names_a_path_cannot_carry(backend: Backend) -> None:
    """Schedule names are free text: `..`, `a/b?x=1#y` broke their pause/resume buttons (the
    name was pasted into the path); worker ids likewise. They now travel in the query."""
    names = ["..", "a/b?x=1#y", "plain"]
    for name in names:
        backend.add_schedule(
            models.Schedule(name=name, cron="* * * * *", command="true", queue="default")
        )
    worker = models.WorkerInfo(id="odd/host?-1-1", host="odd/host?", pid=1, queues=())
    backend.heartbeat([worker], [], lease_ttl_s=30)
    c = client(backend)
    token = csrf(c)

    def press(page: str, label: str) -> int:
        html = c.get(page).text
        actions = re.findall(r'<form method="post" action="([^"]+)"[^>]*>\s*<input[^>]*>\s*'
                             r"<button[^>]*>" + label, html)  # fmt: skip
        for action in actions:
            response = c.post(as_browser(action.replace("&amp;", "&")), data={"csrf": token})
            assert response.status_code == 303, (action, response.text)
        return len(actions)

    assert press("/schedules", "Pause") == 3
    assert all(s.paused for s in backend.list_schedules())
    assert press("/schedules", "Resume") == 3
    assert not any(s.paused for s in backend.list_schedules())
    assert press("/workers", "Drain process") == 1
    assert backend.list_workers(lease_ttl_s=30)[0].stopping


def test_the_job_page_hint_puts_a_dash_id_after_double_dash(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", id="-rf")])
    page = client(backend).get("/jobs/-rf").text
    assert "queuectl show -- -rf; queuectl logs -- -rf" in page
