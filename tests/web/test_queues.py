"""Issue 17 on the dashboard: the Queues page and its actions, blocked jobs and dependencies."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from queuectl import Client, models
from queuectl.backends.base import Backend
from queuectl.config import Settings
from tests.web.test_hardening import as_browser
from tests.web.test_http import client, csrf

LATER = timedelta(hours=1)


def api(backend: Backend) -> Client:
    return Client.over(backend, Settings(database_url=backend.url, lease_ttl_s=10))


def flow(backend: Backend) -> dict[str, tuple[bool, int | None, str | None]]:
    """Each queue's (paused, concurrency, rate) as the database has them now."""
    return {q["name"]: (q["paused"], q["concurrency"], q["rate"]) for q in api(backend).queues()}


def row(page: str, queue: str) -> str:
    match = re.search(rf'<tr data-queue="{re.escape(queue)}".*?</tr>', page, re.DOTALL)
    assert match, f"no row for queue {queue!r}"
    return match.group(0)


def forms(page: str, label: str) -> list[str]:
    """The actions of the forms whose button says `label`, as a browser would request them."""
    actions = re.findall(r'<form method="post" action="([^"]+)"[^>]*>((?:(?!</form>).)*)</form>',
                         page, re.DOTALL)  # fmt: skip
    return [as_browser(html.unescape(a)) for a, body in actions if f">{label}</button>" in body]


def test_the_queues_page_lists_every_queue_with_its_flow_settings(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", id="first", queue="mail")])
    backend.enqueue([models.JobSpec(command="true", id="then", queue="mail", after=("first",))])
    backend.enqueue([models.JobSpec(command="true", id="r1", queue="reports")])
    api(backend).pause_queues(["reports"])
    api(backend).set_queue("mail", concurrency=2, rate="100/1m")
    api(backend).set_queue("empty", concurrency=0)  # settings and no jobs yet: listed too
    c = client(backend)
    page = c.get("/queues").text
    assert '<a href="/queues">Queues</a>' in page  # in the nav
    assert [m for m in re.findall(r'<tr data-queue="([^"]+)"', page)] == [
        "empty",
        "mail",
        "reports",
    ]
    mail = row(page, "mail")
    assert ">active<" in mail and "0 / 2" in mail and "100/1m" in mail
    cells = re.findall(r"<td>(\d+)</td>", mail)
    states = [str(s) for s in models.JobState]
    counts = dict(zip(states, map(int, cells), strict=True))
    assert counts["blocked"] == 1 and counts["pending"] == 1
    assert "<th>blocked</th>" in page
    reports = row(page, "reports")
    assert ">paused<" in reports and forms(reports, "Resume") and not forms(reports, "Pause")
    assert "0 / 0" in row(page, "empty")
    # the overview's queue table links here
    assert 'href="/queues"' in c.get("/").text


def test_pause_and_resume_buttons_change_the_database(backend: Backend) -> None:
    # `..` is a valid queue name: it travels in the query, where a browser leaves it alone
    for queue in ("mail", ".."):
        backend.enqueue([models.JobSpec(command="true", queue=queue)])
    c = client(backend)
    token = csrf(c, "/queues")
    for action in forms(c.get("/queues").text, "Pause"):
        response = c.post(action, data={"csrf": token})
        assert response.status_code == 303, (action, response.text)
        assert response.headers["location"] == "/queues"
    assert flow(backend) == {"..": (True, None, None), "mail": (True, None, None)}
    page = c.get("/queues").text
    assert not forms(page, "Pause")
    (resume,) = forms(row(page, "mail"), "Resume")
    assert c.post(resume, data={"csrf": token}).status_code == 303
    assert flow(backend) == {"..": (True, None, None), "mail": (False, None, None)}
    # idempotent, as the CLI's: resuming a running queue changes nothing and is no error
    assert c.post(resume, data={"csrf": token}).status_code == 303
    assert flow(backend)["mail"] == (False, None, None)


def test_the_limits_form_sets_and_clears_concurrency_and_rate(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    c = client(backend)
    token = csrf(c, "/queues")
    limits = forms(c.get("/queues").text, "Set")[0]  # then the form for a new queue
    assert limits == "/queue/limits?name=mail"
    form = {"csrf": token, "concurrency": " 3 ", "rate": "100/1m"}
    assert c.post(limits, data=form).status_code == 303
    assert flow(backend)["mail"] == (False, 3, "100/1m")
    page = row(c.get("/queues").text, "mail")
    assert 'value="3"' in page and 'value="100/1m"' in page  # the form shows what is set
    # an empty field removes that limit; a field not sent keeps its limit
    assert c.post(limits, data={"csrf": token, "rate": ""}).status_code == 303
    assert flow(backend)["mail"] == (False, 3, None)
    assert c.post(limits, data={"csrf": token, "concurrency": "none", "rate": "5/1s"}).is_redirect
    assert flow(backend)["mail"] == (False, None, "5/1s")
    # the form for a queue that has no jobs yet names it in a field
    new = {"csrf": token, "name": "later", "concurrency": "1", "rate": ""}
    assert c.post("/queue/limits", data=new).status_code == 303
    assert flow(backend)["later"] == (False, 1, None)


def test_bad_limits_show_a_message_and_change_nothing(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    api(backend).set_queue("mail", concurrency=2, rate="5/1s")
    c = client(backend)
    token = csrf(c, "/queues")
    for fields, message in (
        ({"concurrency": "-1", "rate": "1/1m"}, "concurrency must be between 0 and"),
        ({"concurrency": "lots"}, "concurrency must be a whole number"),
        ({"concurrency": "3", "rate": "0/1m"}, "the count must be between 1 and"),  # 3 not set
        ({"concurrency": "3", "rate": "fast"}, "rate must look like 100/1m"),
        ({"rate": "1/0s"}, "period"),
        ({}, "give a limit to set"),
    ):
        response = c.post("/queue/limits?name=mail", data={"csrf": token, **fields})
        assert response.status_code == 400, fields
        shown = re.search(
            r'<p class="error" role="alert" id="form-error">([^<]*)</p>', response.text
        )
        assert shown and message in html.unescape(shown.group(1)), (fields, response.text[:300])
        assert "nothing was changed" in shown.group(1)
        # the whole page, with what was typed still in the form to correct
        assert '<table id="queues">' in response.text
        for value in fields.values():
            assert f'value="{html.escape(value)}"' in row(response.text, "mail"), value
        assert flow(backend)["mail"] == (False, 2, "5/1s"), fields
    # a name that is not a queue name, from the form for a new queue
    bad = {"csrf": token, "name": "no spaces", "concurrency": "1"}
    response = c.post("/queue/limits", data=bad)
    assert response.status_code == 400
    assert "bad queue name" in html.unescape(response.text)
    assert 'value="no spaces"' in response.text
    assert set(flow(backend)) == {"mail"}
    # pause and resume take no values; a missing or bad name is a one-line 400
    assert c.post("/queue/pause", data={"csrf": token}).status_code == 400
    assert c.post("/queue/pause?name=a%20b", data={"csrf": token}).status_code == 400
    assert flow(backend) == {"mail": (False, 2, "5/1s")}


def test_queue_actions_without_a_valid_csrf_token_are_refused(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    c = client(backend)
    csrf(c, "/queues")  # the cookie is set, but the forms below do not echo it
    actions = ("/queue/pause?name=mail", "/queue/resume?name=mail", "/queue/limits?name=mail")
    for action in actions:
        for form in ({"concurrency": "1"}, {"csrf": "forged", "concurrency": "1"}):
            response = c.post(action, data=form)
            assert response.status_code == 403, (action, form)
            assert "CSRF" in response.text
        fresh = client(backend)  # no cookie at all: another site's form
        assert fresh.post(action, data={"csrf": "x", "concurrency": "1"}).status_code == 403
    # another origin is refused before the token is even looked at
    cross = {"Origin": "http://evil.example"}
    response = c.post(actions[0], data={"csrf": csrf(c)}, headers=cross)
    assert response.status_code == 403
    assert flow(backend) == {"mail": (False, None, None)}


def test_read_only_and_token_guarded_dashboards_protect_the_queue_actions(
    backend: Backend,
) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    c = client(backend, read_only=True)
    page = c.get("/queues").text
    assert "/queue/pause" not in page and "/queue/limits" not in page  # no buttons, no forms
    token = csrf(c, "/queues")
    assert c.post("/queue/pause?name=mail", data={"csrf": token}).status_code == 403
    limits = {"csrf": token, "concurrency": "1"}
    assert c.post("/queue/limits?name=mail", data=limits).status_code == 403
    guarded = client(backend, token="s3cret")
    assert guarded.get("/queues").status_code == 401
    assert guarded.post("/queue/pause?name=mail", data={"csrf": "x"}).status_code == 401
    assert flow(backend) == {"mail": (False, None, None)}


def test_blocked_jobs_in_the_jobs_list_and_dependencies_on_the_job_page(
    backend: Backend,
) -> None:
    later = models.utcnow() + LATER
    backend.enqueue([models.JobSpec(command="true", id="..", run_at=later)])  # an odd id
    backend.enqueue([models.JobSpec(command="true", id="b", after=("..",))])
    backend.enqueue([models.JobSpec(command="true", id="c", after=("b", ".."))])
    c = client(backend)
    jobs = c.get("/jobs").text
    assert re.search(r'href="/jobs\?state=blocked[^"]*"[^>]*>blocked <span class="count">2<', jobs)
    blocked = c.get("/jobs?state=blocked").text
    # each row: its checkbox cell (for the bulk actions), then the id's link
    row = r'<tr class="state-(\w+)">\s*(?:<td class="pick">.*?</td>\s*)?<td><a href="[^"]+">'
    assert re.findall(row + r"([^<]+)</a>", blocked) == [
        ("blocked", "c"),
        ("blocked", "b"),
    ]
    page = c.get("/jobs/b").text
    assert '<span class="badge state-blocked" id="job-state">blocked</span>' in page
    after = re.search(r'<dd id="after">(.*?)</dd>', page, re.DOTALL)
    dependents = re.search(r'<dd id="dependents">(.*?)</dd>', page, re.DOTALL)
    assert after and dependents
    assert re.findall(
        r'<a href="([^"]+)">([^<]+)</a> <span class="badge state-(\w+)">', after[1]
    ) == [
        ("/job?id=..", "..", "pending")  # job_url: `/jobs/..` would be `/` in a browser
    ]
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a>', dependents[1]) == [("/jobs/c", "c")]
    # each link reaches the job's page
    for href in ("/job?id=..", "/jobs/c"):
        assert c.get(as_browser(href)).status_code == 200
    # a blocked job can be cancelled (DESIGN §8: blocked -> cancelled), and so its dependent
    (cancel,) = forms(page, "Cancel")
    assert c.post(cancel, data={"csrf": csrf(c)}).status_code == 303
    assert backend.get_job("b").state is models.JobState.CANCELLED
    assert backend.get_job("c").state is models.JobState.CANCELLED
    plain = c.get("/job?id=..").text
    assert '<dd id="dependents">' in plain and '<dd id="after">-</dd>' in plain


def test_metrics_export_blocked_jobs_and_flow_control(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", id="a", run_at=models.utcnow() + LATER)])
    backend.enqueue([models.JobSpec(command="true", id="b", after=("a",))])
    api(backend).pause_queues(["default"])
    api(backend).set_queue("bulk", concurrency=4, rate="120/1m")
    text = client(backend).get("/metrics").text
    samples = dict(re.findall(r"^(queuectl_queue_\w+\{[^}]*\}) (\S+)$", text, re.MULTILINE))
    assert samples['queuectl_queue_jobs{queue="default",state="blocked"}'] == "1.0"
    assert samples['queuectl_queue_paused{queue="default"}'] == "1.0"
    assert samples['queuectl_queue_paused{queue="bulk"}'] == "0.0"
    assert samples['queuectl_queue_concurrency_limit{queue="bulk"}'] == "4.0"
    assert samples['queuectl_queue_rate_limit{queue="bulk"}'] == "2.0"  # per second
    assert samples['queuectl_queue_rate_period_seconds{queue="bulk"}'] == "60.0"
    # no limit, no series (a sentinel value would draw as a limit)
    assert 'queuectl_queue_concurrency_limit{queue="default"}' not in samples
    assert 'queuectl_queue_rate_limit{queue="default"}' not in samples
