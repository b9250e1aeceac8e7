"""Every dashboard page and action over HTTP (Starlette's test client), on both backends."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from queuectl import Client, models
from queuectl.backends.base import Backend
from queuectl.config import Settings
from queuectl.web.app import create_app


def client(backend: Backend, lease_ttl_s: float = 10.0, **kw: object) -> TestClient:
    api = Client.over(backend, Settings(database_url=backend.url, lease_ttl_s=lease_ttl_s))
    return TestClient(create_app(api, **kw), follow_redirects=False)  # type: ignore[arg-type]


def csrf(c: TestClient, page: str = "/") -> str:
    html = c.get(page).text
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def finish(backend: Backend, job_id: str, ok: bool) -> None:
    (job,) = [j for j in backend.claim(["w1"], (), host="h", lease_ttl_s=30) if j.id == job_id]
    kind = models.OutcomeKind.SUCCEEDED if ok else models.OutcomeKind.FAILED
    backend.finish(
        job, models.Outcome(kind, exit_code=0 if ok else 3, output="hello\n", output_bytes=6), None
    )


def test_the_overview_charts_the_last_hour(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id=i, max_retries=0) for i in ("a", "b")])
    finish(backend, "a", ok=True)
    finish(backend, "b", ok=False)
    html = client(backend).get("/").text
    assert '<svg class="chart" id="throughput"' in html
    assert "<title>1 succeeded</title>" in html
    assert "<title>1 failed</title>" in html


def test_every_page_renders(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="echo hi", id="a", queue="mail")])
    backend.add_schedule(models.Schedule(name="nightly", cron="0 3 * * *", command="true"))
    c = client(backend)
    for page in (
        "/",
        "/jobs",
        "/jobs?state=blocked",
        "/jobs/a",
        "/queues",
        "/dlq",
        "/workers",
        "/schedules",
    ):
        response = c.get(page)
        assert response.status_code == 200, page
        assert "queuectl" in response.text
    assert "mail" in c.get("/").text
    assert "nightly" in c.get("/schedules").text
    assert c.get("/healthz").json() == {"ok": True}
    assert "queuectl_queue_jobs" in c.get("/metrics").text


def test_the_schedules_page_shows_each_time_zone(backend: Backend) -> None:
    backend.add_schedule(
        models.Schedule(name="berlin", cron="30 2 * * *", command="true", tz="Europe/Berlin")
    )
    backend.add_schedule(models.Schedule(name="plain", cron="@daily", command="true"))
    html = client(backend).get("/schedules").text
    rows = re.findall(r'<tr data-schedule="(\w+)".*?<span class="zone">([^<]*)</span>', html, re.S)
    assert rows == [("berlin", "Europe/Berlin"), ("plain", "UTC")]


def test_job_detail_shows_attempts_output_and_the_cli(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="echo hello", id="j1")])
    finish(backend, "j1", ok=True)
    page = client(backend).get("/jobs/j1").text
    assert "hello\n</pre>" in page
    assert "#1 · succeeded" in page
    assert "queuectl show j1; queuectl logs j1" in page
    assert client(backend).get("/jobs/missing").status_code == 404


def test_output_and_commands_are_escaped(backend: Backend) -> None:
    evil = "echo '<script>alert(1)</script>'"
    backend.enqueue([models.JobSpec(command=evil, id="x")])
    c = client(backend)
    for page in ("/jobs", "/jobs/x"):
        html = c.get(page).text
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_jobs_list_filters_searches_and_pages(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command=f"echo n{i}", id=f"j{i:03d}") for i in range(60)])
    backend.enqueue([models.JobSpec(command="tar czf backup.tgz", id="bk", queue="ops")])
    c = client(backend)
    first = c.get("/jobs").text
    assert first.count('<tr class="state-') == 50
    older = re.search(r'href="(/jobs\?[^"]*before=[^"]+)"', first)
    assert older
    second = c.get(older.group(1).replace("&amp;", "&")).text
    assert second.count('<tr class="state-') == 11
    assert "j000" in second and "j059" not in second
    assert ">bk<" in c.get("/jobs?q=backup").text
    assert c.get("/jobs?q=backup").text.count('<tr class="state-') == 1
    assert c.get("/jobs?queue=ops").text.count('<tr class="state-') == 1
    assert c.get("/jobs?state=bogus").status_code == 400


def test_actions_cancel_retry_and_the_dlq(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id=i, max_retries=0) for i in ("d1", "d2")])
    finish(backend, "d1", ok=False)
    finish(backend, "d2", ok=False)
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend)
    token = csrf(c)
    assert c.post("/jobs/p/cancel", data={"csrf": token}).status_code == 303
    assert backend.get_job("p").state is models.JobState.CANCELLED
    assert c.post("/jobs/p/retry", data={"csrf": token}).status_code == 303
    assert backend.get_job("p").state is models.JobState.PENDING
    assert c.post("/jobs/p/retry", data={"csrf": token}).status_code == 409  # pending
    assert c.post("/jobs/nope/cancel", data={"csrf": token}).status_code == 404
    assert "d1" in c.get("/dlq").text
    c.post("/dlq/retry", data={"csrf": token, "id:d1": "d1"})
    assert backend.get_job("d1").state is models.JobState.PENDING
    assert backend.get_job("d2").state is models.JobState.DEAD
    c.post("/dlq/retry", data={"csrf": token, "all": "1"})
    assert backend.get_job("d2").state is models.JobState.PENDING


def test_redirects_stay_on_the_site(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend)
    response = c.post("/jobs/p/cancel", data={"csrf": csrf(c), "next": "https://evil.example/"})
    assert response.headers["location"] == "/jobs/p"


def test_posts_without_a_valid_csrf_token_are_refused(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend)
    csrf(c)  # the cookie is set, but the form does not echo it
    assert c.post("/jobs/p/cancel", data={}).status_code == 403
    assert c.post("/jobs/p/cancel", data={"csrf": "forged"}).status_code == 403
    fresh = client(backend)  # no cookie at all: a cross-site form post
    assert fresh.post("/jobs/p/cancel", data={"csrf": "anything"}).status_code == 403
    assert backend.get_job("p").state is models.JobState.PENDING


def test_read_only_mode_changes_nothing(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend, read_only=True)
    page = c.get("/jobs").text
    assert "read-only" in page
    assert "/cancel" not in page  # no action buttons
    c.get("/")
    token = c.cookies.get("queuectl_csrf")
    assert c.post("/jobs/p/cancel", data={"csrf": token}).status_code == 403
    assert backend.get_job("p").state is models.JobState.PENDING


def test_a_token_guards_everything_but_healthz(backend: Backend) -> None:
    c = client(backend, token="s3cret")
    assert c.get("/").status_code == 401
    assert c.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200
    assert c.get("/login?token=s3cret").status_code == 303
    assert c.get("/").status_code == 200  # the cookie /login set


def test_with_a_token_a_mutation_needs_both_the_token_and_the_csrf_token(
    backend: Backend,
) -> None:
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend, token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    # a page fetched with the token: its form's CSRF token, and the cookie that validates it
    match = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/", headers=bearer).text)
    assert match and c.cookies.get("queuectl_csrf") == match.group(1)
    token = match.group(1)
    # no token, or a wrong one: refused before the CSRF check, whatever the form carries
    assert c.post("/jobs/p/cancel", data={"csrf": token}).status_code == 401
    wrong = {"Authorization": "Bearer s3cre"}
    assert c.post("/jobs/p/cancel", data={"csrf": token}, headers=wrong).status_code == 401
    assert c.get("/login?token=wrong").status_code == 401  # and sets no cookie
    assert c.post("/jobs/p/cancel", data={"csrf": token}).status_code == 401
    # the token without CSRF: refused too (a cross-site form rides on the login cookie)
    assert c.post("/jobs/p/cancel", data={}, headers=bearer).status_code == 403
    assert c.post("/jobs/p/cancel", data={"csrf": "forged"}, headers=bearer).status_code == 403
    assert backend.get_job("p").state is models.JobState.PENDING
    assert c.post("/jobs/p/cancel", data={"csrf": token}, headers=bearer).status_code == 303
    assert backend.get_job("p").state is models.JobState.CANCELLED


def test_no_page_or_error_echoes_the_token(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="x", id="p")])
    c = client(backend, token="s3cret-t0ken")
    c.get("/login?token=s3cret-t0ken")
    bodies = [
        c.get(page).text
        for page in (
            "/",
            "/jobs",
            "/jobs/p",
            "/jobs/none",
            "/queues",
            "/dlq",
            "/workers",
            "/metrics",
        )
    ]
    bodies.append(c.post("/jobs/p/cancel", data={"csrf": "forged"}).text)
    bodies.append(client(backend, token="s3cret-t0ken").get("/").text)  # the 401 page
    assert not [b for b in bodies if "s3cret-t0ken" in b]


def test_workers_and_schedules_actions(backend: Backend) -> None:
    w = models.WorkerInfo(id="w1", host="h", pid=1, queues=())
    backend.heartbeat([w], [], lease_ttl_s=30)
    backend.add_schedule(models.Schedule(name="tick", cron="* * * * *", command="true"))
    other = models.WorkerInfo(id="w2", host="h", pid=2, queues=())
    backend.heartbeat([other], [], lease_ttl_s=30)
    c = client(backend, lease_ttl_s=30)
    token = csrf(c)
    assert "w1" in c.get("/workers").text
    assert c.post("/workers/w2/stop", data={"csrf": token}).status_code == 303
    assert {w.id: w.stopping for w in backend.list_workers(lease_ttl_s=30)} == {
        "w1": False,
        "w2": True,
    }
    assert c.post("/workers/gone/stop", data={"csrf": token}).status_code == 404
    c.post("/workers/stop", data={"csrf": token})
    assert all(w.stopping for w in backend.list_workers(lease_ttl_s=30))
    c.post("/schedules/tick/pause", data={"csrf": token})
    assert backend.list_schedules()[0].paused
    c.post("/schedules/tick/resume", data={"csrf": token})
    resumed = backend.list_schedules()[0]
    assert not resumed.paused
    assert resumed.last_slot is not None
    assert resumed.last_slot > models.utcnow() - timedelta(minutes=2)


@pytest.mark.e2e
def test_the_cli_refuses_a_public_bind_without_a_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import Cli

    result = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)("dashboard", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "QUEUECTL_DASHBOARD_TOKEN" in result.stderr
    assert result.stderr.count("\n") == 1
