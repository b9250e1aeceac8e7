"""Issue 18, items 9-10: bulk actions, confirmations, DLQ filters, the jobs list's times and
paging, over HTTP on both backends and in Chromium."""

from __future__ import annotations

import html
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from queuectl import Client, errors, models
from queuectl.backends.base import Backend
from queuectl.web import times
from queuectl.web.app import PAGE_SIZE
from tests.conftest import Cli
from tests.web.test_browser import open_page, quiet_site  # noqa: F401 (a fixture)
from tests.web.test_http import client, csrf

LATER = timedelta(hours=2)


def spec(job_id: str, **kw: Any) -> models.JobSpec:
    return models.JobSpec(command=f"echo {job_id}", id=job_id, **kw)


def states(backend: Backend, *ids: str) -> dict[str, str]:
    return {i: str(backend.get_job(i).state) for i in ids}


def run(backend: Backend, job_id: str, *, ok: bool, retry_in: timedelta | None = None) -> None:
    """Claim the next due job, which must be `job_id`, and end its attempt."""
    (job,) = [j for j in backend.claim(["w1"], (), host="h", lease_ttl_s=30) if j.id == job_id]
    kind = models.OutcomeKind.SUCCEEDED if ok else models.OutcomeKind.FAILED
    outcome = models.Outcome(kind, exit_code=0 if ok else 3, output="", output_bytes=0)
    backend.finish(job, outcome, retry_in)


def dead(backend: Backend, job_id: str, queue: str) -> None:
    backend.enqueue([spec(job_id, queue=queue, max_retries=0)])
    run(backend, job_id, ok=False)


def age(backend: Backend, job_id: str, column: str, seconds: int) -> None:
    """Move a stored time `seconds` into the past (no mocked clocks: the rows are aged)."""
    if backend.url.startswith("sqlite"):
        change = f"{column} = {column} - {seconds}"  # SQLite stores Unix seconds
    else:
        change = f"{column} = {column} - interval '{seconds} seconds'"
    with cast(Any, backend).c.transaction() as session:
        handle = getattr(session, "cur", None) or session.conn
        handle.execute(f"UPDATE queuectl_jobs SET {change} WHERE id = '{job_id}'")


def ticked(*ids: str) -> dict[str, str]:
    return {f"id:{i}": i for i in ids}


def question(page: str) -> str:
    found = re.search(r'<h1 id="confirm-question">([^<]*)</h1>', page)
    assert found, page[:400]
    return html.unescape(found.group(1))


def confirm_form(page: str) -> tuple[str, dict[str, str]]:
    """The confirmation page's form: where it posts, and every field it sends."""
    found = re.search(
        r'<form method="post" action="([^"]+)" id="confirm-form".*?</form>', page, re.S
    )
    assert found, page[:400]
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found.group(0))
    return html.unescape(found.group(1)), {html.unescape(k): html.unescape(v) for k, v in fields}


def row_ids(page: str) -> list[str]:
    return re.findall(r'data-pick="bulk" name="id:([^"]+)"', page)


# --- bulk actions on the jobs list ------------------------------------------------------------
def test_bulk_cancel_and_retry_act_on_the_ticked_jobs_and_say_so(backend: Backend) -> None:
    backend.enqueue([spec("done")])
    run(backend, "done", ok=True)
    backend.enqueue([spec(i) for i in ("p1", "p2", "p3")])
    c = client(backend)
    page = c.get("/jobs?state=pending").text
    assert row_ids(page) == ["p3", "p2", "p1"]
    assert 'data-select-all="bulk"' in page
    token = csrf(c, "/jobs")
    back = "/jobs?state=pending"
    form = {"csrf": token, "do": "cancel", "next": back, "confirm": "yes", **ticked("p1", "p2")}
    response = c.post("/jobs/bulk", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == f"{back}&done=cancelled&n=2&skipped=0"
    assert states(backend, "p1", "p2", "p3") == {
        "p1": "cancelled",
        "p2": "cancelled",
        "p3": "pending",
    }
    shown = c.get(response.headers["location"]).text
    assert '<p class="notice" role="status" id="notice">cancelled 2 jobs</p>' in shown
    # a completed job among the ticked ones: the others are still acted on, it is skipped
    form = {"csrf": token, "do": "retry", **ticked("p1", "done", "p2")}
    response = c.post("/jobs/bulk", data=form)
    assert response.headers["location"] == "/jobs?done=retried&n=2&skipped=1"
    assert states(backend, "p1", "p2", "done") == {
        "p1": "pending",
        "p2": "pending",
        "done": "completed",
    }
    notice = c.get(response.headers["location"]).text
    assert "retried 2 jobs; 1 skipped: not in a state that allows it any more" in notice
    form = {"csrf": token, "do": "cancel", "confirm": "yes", **ticked("p3", "done", "gone")}
    assert c.post("/jobs/bulk", data=form).headers["location"].endswith("n=1&skipped=2")
    assert states(backend, "p3", "done") == {"p3": "cancelled", "done": "completed"}


def test_bulk_cancel_asks_first_and_acts_only_when_confirmed(backend: Backend) -> None:
    backend.enqueue([spec(i) for i in ("a", "b", "c")])
    c = client(backend)
    token = csrf(c, "/jobs")
    # what a browser without JavaScript sends: `confirm=ask` -> a page with the question
    form = {"csrf": token, "do": "cancel", "confirm": "ask", "next": "/jobs", **ticked("a", "b")}
    response = c.post("/jobs/bulk", data=form)
    assert response.status_code == 200
    assert question(response.text) == "Cancel 2 selected jobs (a, b)? Running ones are killed."
    assert states(backend, "a", "b") == {"a": "pending", "b": "pending"}
    assert '<a class="back" href="/jobs">No, go back</a>' in response.text
    target, fields = confirm_form(response.text)
    assert target == "/jobs/bulk"
    assert fields == {**form, "confirm": "yes"}
    assert c.post(target, data=fields).status_code == 303
    assert states(backend, "a", "b", "c") == {"a": "cancelled", "b": "cancelled", "c": "pending"}
    # retrying loses nothing: it is not asked about
    again = {"csrf": token, "do": "retry", "confirm": "ask", **ticked("a")}
    assert c.post("/jobs/bulk", data=again).status_code == 303
    assert states(backend, "a") == {"a": "pending"}
    # the rendered forms: the bulk form asks, in live.js's dialog or on that page
    page = c.get("/jobs").text
    bulk = re.search(r'<form method="post" action="/jobs/bulk".*?</form>', page, re.S)
    assert bulk and 'name="confirm" value="ask"' in bulk.group(0)
    assert 'data-confirm="Cancel {n} selected jobs? Running ones are killed."' in bulk.group(0)
    assert 'form="bulk" data-pick="bulk" name="id:c" value="c"' in page
    # no JavaScript, no select-all box: the page can tick every box itself
    assert c.get("/jobs?select=page").text.count('value="c" aria-label="select c" checked') == 1


def test_cancelling_a_running_job_asks_and_a_waiting_one_does_not(backend: Backend) -> None:
    backend.enqueue([spec("run"), spec("wait", run_at=models.utcnow() + LATER)])
    backend.claim(["w1"], (), host="h", lease_ttl_s=30)
    c = client(backend)
    token = csrf(c)
    page = c.get("/jobs/run").text
    assert 'data-confirm="Cancel job run? It is running: its process is killed."' in page
    assert "data-confirm" not in c.get("/jobs/wait").text
    response = c.post("/jobs/run/cancel", data={"csrf": token, "confirm": "ask"})
    assert question(response.text) == "Cancel job run? It is running: its process is killed."
    assert backend.get_job("run").state is models.JobState.PROCESSING
    assert not backend.get_job("run").cancel_requested
    target, fields = confirm_form(response.text)
    assert c.post(target, data=fields).status_code == 303
    assert backend.get_job("run").cancel_requested
    # the form a script posts (no `confirm` field) acts at once, as before
    assert c.post("/jobs/wait/cancel", data={"csrf": token}).status_code == 303
    assert backend.get_job("wait").state is models.JobState.CANCELLED


def test_bad_bulk_forms_change_nothing(backend: Backend) -> None:
    backend.enqueue([spec("a")])
    c = client(backend)
    token = csrf(c)
    for form, message in (
        ({"do": "cancel"}, "select one or more jobs first"),
        ({"do": "delete", **ticked("a")}, "do must be cancel or retry"),
        ({**ticked("a")}, "do must be cancel or retry"),
        ({"do": "cancel", "confirm": "ask"}, "select one or more jobs first"),
        ({"do": "cancel", **ticked(*(f"j{i}" for i in range(501)))}, "at most 500 jobs"),
    ):
        response = c.post("/jobs/bulk", data={"csrf": token, **form})
        assert response.status_code == 400, form
        assert message in response.text
        assert response.text.count("\n") == 0  # one line, no traceback
    assert states(backend, "a") == {"a": "pending"}
    # a GET of /jobs/bulk is the page of a job named `bulk`, as any id's
    assert c.get("/jobs/bulk").status_code == 404
    backend.enqueue([spec("bulk")])
    assert "Job <code>bulk</code>" in c.get("/jobs/bulk").text


def test_read_only_and_token_guarded_dashboards_refuse_bulk_actions(backend: Backend) -> None:
    dead(backend, "d", "mail")
    backend.enqueue([spec("a")])
    c = client(backend, read_only=True)
    jobs, dlq = c.get("/jobs").text, c.get("/dlq").text
    assert 'action="/jobs/bulk"' not in jobs and "data-pick" not in jobs
    assert "/dlq/purge" not in dlq and "data-pick" not in dlq
    token = csrf(c)
    posts = [
        ("/jobs/bulk", {"do": "cancel", **ticked("a")}),
        ("/jobs/bulk", {"do": "cancel", "confirm": "ask", **ticked("a")}),  # no question either
        ("/jobs/bulk", {"do": "cancel", "confirm": "yes", **ticked("a")}),
        ("/dlq/purge", {"confirm": "yes"}),
        ("/dlq/purge", {"queue": "mail", "confirm": "ask"}),
        ("/dlq/retry", {"all": "1", "confirm": "yes"}),
        ("/workers/stop", {"confirm": "yes"}),
    ]
    for path, form in posts:
        response = c.post(path, data={"csrf": token, **form})
        assert response.status_code == 403, path
        assert response.text == "read-only dashboard"
    guarded = client(backend, token="s3cret-s3cret-s3cret")
    for path, form in posts:
        assert guarded.post(path, data={"csrf": "x", **form}).status_code == 401
    assert states(backend, "a", "d") == {"a": "pending", "d": "dead"}


# --- the DLQ: filters, purge, retry all ---------------------------------------------------------
def test_the_dlq_is_filtered_by_queue_and_age_and_purges_only_that_set(backend: Backend) -> None:
    for job_id, queue in (("m-old", "mail"), ("m-new", "mail"), ("o-old", "ops"), ("o-new", "ops")):
        dead(backend, job_id, queue)
    for job_id in ("m-old", "o-old"):
        age(backend, job_id, "finished_at", 3 * 3600)
    c = client(backend)
    token = csrf(c)

    def listed(query: str) -> list[str]:
        page = c.get(f"/dlq{query}").text
        return re.findall(r'data-pick="dlq" name="id:([^"]+)"', page)

    assert listed("") == ["o-new", "o-old", "m-new", "m-old"]
    assert listed("?queue=mail") == ["m-new", "m-old"]
    assert listed("?older_than=1h") == ["o-old", "m-old"]
    assert listed("?queue=mail&older_than=2h") == ["m-old"]
    page = c.get("/dlq?queue=mail&older_than=2h").text
    assert '<span class="count" id="dlq-matching">1</span>' in page
    assert 'action="/dlq/retry" class="inline"' not in page  # "Retry all" would leave the filter
    assert ">Purge these 1</button>" in page
    assert 'data-confirm="Delete 1 dead job of queue mail dead longer than 2h and' in page
    assert '<option value="mail"><option value="ops">' in page  # queues with dead jobs
    # the purge asks (with the count as it is then), then deletes exactly the filtered set
    purge = {"csrf": token, "queue": "mail", "older_than": "2h"}
    purge["next"] = "/dlq?queue=mail&older_than=2h"
    response = c.post("/dlq/purge", data={**purge, "confirm": "ask"})
    assert question(response.text) == (
        "Delete 1 dead job of queue mail dead longer than 2h and their attempts? "
        "This cannot be undone."
    )
    assert len(listed("")) == 4
    target, fields = confirm_form(response.text)
    response = c.post(target, data=fields)
    assert response.headers["location"] == "/dlq?queue=mail&older_than=2h&done=purged&n=1&skipped=0"
    assert "purged 1 dead job<" in c.get(response.headers["location"]).text
    assert listed("") == ["o-new", "o-old", "m-new"]
    with pytest.raises(errors.JobNotFound):
        backend.get_job("m-old")
    # a queue's purge takes every age; no filter at all takes everything (the form says all)
    c.post("/dlq/purge", data={"csrf": token, "queue": "ops", "older_than": ""})
    assert listed("") == ["m-new"]
    assert ">Purge all 1</button>" in c.get("/dlq").text


def test_bad_dlq_filters_are_a_message_and_purge_nothing(backend: Backend) -> None:
    dead(backend, "d", "mail")
    c = client(backend)
    token = csrf(c)
    for query, message in (
        ("?older_than=soon", "is not a duration"),
        ("?queue=no%20spaces", "queue"),
    ):
        response = c.get(f"/dlq{query}")
        assert response.status_code == 400, query
        shown = re.search(
            r'<p class="error" role="alert" id="form-error">([^<]*)</p>', response.text
        )
        assert shown and message in html.unescape(shown.group(1))
        assert "/dlq/purge" not in response.text
    for form in ({"older_than": "soon"}, {"queue": "no spaces"}):
        for confirm in ("ask", "yes"):
            response = c.post("/dlq/purge", data={"csrf": token, "confirm": confirm, **form})
            assert response.status_code == 400
    assert states(backend, "d") == {"d": "dead"}


def test_retry_all_asks_and_retry_selected_keeps_the_filter(backend: Backend) -> None:
    for job_id, queue in (("a", "mail"), ("b", "mail"), ("c", "ops")):
        dead(backend, job_id, queue)
    c = client(backend)
    token = csrf(c)
    page = c.get("/dlq").text
    assert 'data-confirm="Retry all 3 dead jobs, of every queue?"' in page
    response = c.post("/dlq/retry", data={"csrf": token, "all": "1", "confirm": "ask"})
    assert question(response.text) == "Retry all 3 dead jobs, of every queue?"
    assert states(backend, "a", "b", "c") == {"a": "dead", "b": "dead", "c": "dead"}
    selected = {"csrf": token, "next": "/dlq?queue=mail", **ticked("a", "c")}
    response = c.post("/dlq/retry", data=selected)
    assert response.headers["location"] == "/dlq?queue=mail&done=retried&n=2&skipped=0"
    target, fields = confirm_form(
        c.post("/dlq/retry", data={"csrf": token, "all": "1", "confirm": "ask"}).text
    )
    assert c.post(target, data=fields).headers["location"] == "/dlq?done=retried&n=1&skipped=0"
    assert states(backend, "a", "b", "c") == {"a": "pending", "b": "pending", "c": "pending"}


def test_draining_every_worker_asks_first(backend: Backend) -> None:
    for n in (1, 2):
        info = models.WorkerInfo(id=f"w{n}", host="h", pid=7, queues=())
        backend.heartbeat([info], [], lease_ttl_s=30)
    c = client(backend, lease_ttl_s=30)
    token = csrf(c)
    drain = re.search(
        r'<form method="post" action="/workers/stop".*?</form>', c.get("/workers").text, re.S
    )
    assert drain and 'data-confirm="Drain every worker?' in drain.group(0)
    assert 'name="confirm" value="ask"' in drain.group(0)
    response = c.post("/workers/stop", data={"csrf": token, "confirm": "ask"})
    assert question(response.text).startswith("Drain every worker? 1 live process: each finishes")
    assert not any(w.stopping for w in backend.list_workers(lease_ttl_s=30))
    target, fields = confirm_form(response.text)
    assert c.post(target, data=fields).status_code == 303
    assert all(w.stopping for w in backend.list_workers(lease_ttl_s=30))


# --- the jobs list: times and paging ------------------------------------------------------------
def cell(page: str, job_id: str, cls: str) -> tuple[str, str]:
    """(title, text) of one row's cell of class `cls`."""
    found = re.search(
        rf'name="id:{re.escape(job_id)}".*?<td class="{cls}"( title="[^"]*")?>([^<]*)<', page, re.S
    )
    assert found, (job_id, cls)
    return html.unescape(found.group(1) or "")[8:-1], html.unescape(found.group(2))


def test_the_jobs_list_shows_relative_times_run_times_and_retry_countdowns(
    backend: Backend,
) -> None:
    backend.enqueue([spec("ok")])
    run(backend, "ok", ok=True)
    age(backend, "ok", "started_at", 2)  # it "ran" two seconds
    backend.enqueue([spec("flaky")])
    run(backend, "flaky", ok=False, retry_in=timedelta(minutes=30))
    backend.enqueue([spec("running")])
    backend.claim(["w1"], (), host="h", lease_ttl_s=30)
    backend.enqueue([spec("old"), spec("later", run_at=models.utcnow() + LATER)])
    age(backend, "old", "created_at", 185)
    c = client(backend)
    page = c.get("/jobs").text
    title, text = cell(page, "old", "when")
    assert text == "3 min ago"
    assert title == models.iso(backend.get_job("old").created_at)  # the absolute UTC time
    assert title.endswith("Z")
    assert re.fullmatch(r"2\.0s|2\.1s", cell(page, "ok", "ran")[1])
    assert cell(page, "running", "ran")[1].startswith("running ")
    title, text = cell(page, "flaky", "next")
    assert text in ("retry in 29 min", "retry in 30 min")
    assert title == models.iso(backend.get_job("flaky").run_at)
    assert cell(page, "later", "next")[1] in ("due in 1 h 59 min", "due in 2 h")
    assert cell(page, "ok", "next")[1] == ""
    # a failed job whose backoff is over waits for the next free worker
    age(backend, "flaky", "run_at", 3600)
    assert cell(c.get("/jobs").text, "flaky", "next")[1] == "retry due"


def test_relative_times_read_as_a_person_would_say_them() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    for seconds, said in (
        (0.4, "now"),
        (-42, "42 s ago"),
        (-185, "3 min ago"),
        (7200, "in 2 h"),
        (7199, "in 1 h 59 min"),
        (-5400, "1 h 30 min ago"),
        (3 * 86400 + 3600, "in 3 d 1 h"),
        (-2 * 86400, "2 d ago"),
    ):
        assert times.relative(now + timedelta(seconds=seconds), now) == said, seconds
    assert times.relative(None, now) == "-"


def test_paging_both_ways_neither_skips_nor_repeats_while_jobs_are_added(
    backend: Backend,
) -> None:
    backend.enqueue([spec(f"j{i:03d}") for i in range(2 * PAGE_SIZE + 20)])  # j000 .. j119
    c = client(backend)

    def follow(page: str, cls: str) -> str | None:
        link = re.search(rf'<a class="{cls}" href="([^"]+)"', page)
        return html.unescape(link.group(1)) if link else None

    first = c.get("/jobs?queue=default").text
    assert follow(first, "prev") is None and follow(first, "newest") is None
    assert row_ids(first)[0] == "j119" and len(row_ids(first)) == PAGE_SIZE
    older = follow(first, "next")
    assert older
    second = c.get(older).text
    assert row_ids(second) == [f"j{i:03d}" for i in range(69, 19, -1)]
    # jobs arrive while someone reads page two
    backend.enqueue([spec(f"new{i:02d}") for i in range(PAGE_SIZE + 10)])
    third_link = follow(second, "next")
    newer = follow(second, "prev")
    assert third_link and newer and "queue=default" in newer
    third = c.get(third_link).text
    assert row_ids(third) == [f"j{i:03d}" for i in range(19, -1, -1)]
    assert follow(third, "next") is None
    # the Client's two cursors exclude each other
    with pytest.raises(errors.UsageError, match="before or after, not both"):
        Client.over(backend).list(before="j010", after="j005")
    # a cursor that was deleted meanwhile: an empty page, with its way back to the top
    gone = c.get("/jobs?before=no-such-job").text
    assert row_ids(gone) == [] and follow(gone, "newest") == "/jobs?state=&queue=&q="
    # back up: the page above page two is the old first page, not the newest jobs
    up = c.get(newer).text
    assert row_ids(up) == [f"j{i:03d}" for i in range(119, 69, -1)]
    seen = row_ids(up) + row_ids(second) + row_ids(third)
    ups = []
    link = follow(up, "prev")
    while link:
        page = c.get(link).text
        ups.append(row_ids(page))
        link = follow(page, "prev")
    # above it, the 60 new jobs: the 50 just above, then the top (the newest 50, which is
    # what the first page shows now; overlapping the page below it, skipping nothing)
    assert ups == [
        [f"new{i:02d}" for i in range(49, -1, -1)],
        [f"new{i:02d}" for i in range(59, 9, -1)],
    ]
    assert len(set(seen)) == len(seen) == 2 * PAGE_SIZE + 20
    assert len(set(seen + ups[0] + ups[1])) == 2 * PAGE_SIZE + 20 + 60
    # filters survive the links, and a state filter pages the same way
    backend.cancel_many([f"j{i:03d}" for i in range(0, 120, 2)])
    cancelled = c.get("/jobs?state=cancelled").text
    down = c.get(follow(cancelled, "next") or "").text
    assert row_ids(down) == [f"j{i:03d}" for i in range(18, -1, -2)]
    back_up = c.get(follow(down, "prev") or "").text
    assert row_ids(back_up) == row_ids(cancelled)


# --- in Chromium ------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.slow
def test_bulk_actions_and_confirmations_in_a_browser(
    quiet_site: tuple[str, Cli],  # noqa: F811
) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    url, cli = quiet_site
    shots = Path(os.environ.get("SCREENSHOTS", cli.cwd / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    for job_id in ("a1", "a2", "a3", "a4"):
        cli.enqueue({"id": job_id, "command": "true", "delay": "1h"})
    for job_id, queue in (("m1", "mail"), ("m2", "mail"), ("o1", "ops")):
        cli.enqueue({"id": job_id, "command": "exit 3", "queue": queue, "max_retries": 0})
    assert cli("worker", "start", "--burst", "--queue", "mail", "--queue", "ops").returncode == 0
    api = Client(cli.url)

    def state(*ids: str) -> list[str]:
        return [str(api.get(i).state) for i in ids]

    assert state("m1", "m2", "o1") == ["dead"] * 3
    asked: list[str] = []
    answer = {"accept": False}

    def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if answer["accept"]:
            dialog.accept()
        else:
            dialog.dismiss()

    with sync_playwright() as pw:
        browser, page, console = open_page(pw)
        page.on("dialog", on_dialog)
        page.goto(url + "/jobs?state=pending")
        page.select_option("#refresh-interval", "2")
        rows = page.locator("#jobs tbody tr")
        expect(rows).to_have_count(4)
        expect(rows.first.locator("td.next")).to_have_text(re.compile(r"due in (59 min|1 h)"))
        page.check('input[name="id:a1"]')
        page.check('input[name="id:a2"]')
        # a live refresh would untick the boxes: it waits while some are ticked
        page.evaluate("document.activeElement.blur()")
        page.wait_for_timeout(2500)
        expect(page.locator('input[name="id:a1"]')).to_be_checked()
        page.screenshot(path=str(shots / "jobs-bulk.png"), full_page=True)
        cancel = page.get_by_role("button", name="Cancel selected")
        cancel.click()  # dismissed: nothing is sent
        page.wait_for_timeout(300)
        assert asked == ["Cancel 2 selected jobs? Running ones are killed."]
        assert state("a1", "a2") == ["pending", "pending"]
        assert page.url == url + "/jobs?state=pending"
        answer["accept"] = True
        cancel.click()
        expect(page.locator("#notice")).to_have_text("cancelled 2 jobs")
        assert state("a1", "a2", "a3") == ["cancelled", "cancelled", "pending"]
        expect(rows).to_have_count(2)  # back on the filtered list
        # select-all ticks the page; retry asks nothing
        page.goto(url + "/jobs?state=cancelled")
        page.check("input[data-select-all]")
        expect(page.locator("input[data-pick]:checked")).to_have_count(2)
        page.get_by_role("button", name="Retry selected").click()
        expect(page.locator("#notice")).to_have_text("retried 2 jobs")
        assert len(asked) == 2  # the two cancels above: the retry asked nothing
        assert state("a1", "a2") == ["pending", "pending"]

        # the DLQ, filtered by queue; its purge asks, and deletes only that queue's
        page.goto(url + "/dlq")
        page.click("#refresh-toggle")  # paused: the clicks below land on this page
        page.get_by_label("queue", exact=True).fill("mail")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#dlq-matching")).to_have_text("2")
        expect(page.get_by_role("button", name="Retry all")).to_have_count(0)
        page.screenshot(path=str(shots / "dlq-filtered.png"), full_page=True)
        answer["accept"] = False
        page.get_by_role("button", name="Purge these 2").click()
        page.wait_for_timeout(300)
        assert asked[-1] == (
            "Delete 2 dead jobs of queue mail and their attempts? This cannot be undone."
        )
        assert api.dlq_count() == 3
        answer["accept"] = True
        page.get_by_role("button", name="Purge these 2").click()
        expect(page.locator("#notice")).to_have_text("purged 2 dead jobs")
        assert api.dlq_count() == 0 + 1 and state("o1") == ["dead"]
        # retry all: asked, dismissed, nothing; accepted, retried
        page.goto(url + "/dlq")
        answer["accept"] = False
        page.get_by_role("button", name="Retry all").click()
        page.wait_for_timeout(300)
        assert asked[-1] == "Retry all 1 dead job, of every queue?"
        assert state("o1") == ["dead"]
        answer["accept"] = True
        page.get_by_role("button", name="Retry all").click()
        expect(page.locator("#notice")).to_have_text("retried 1 job")
        assert state("o1") == ["pending"]

        # without JavaScript: the server asks on a page of its own
        plain = browser.new_context(java_script_enabled=False).new_page()
        plain.goto(url + "/jobs?state=pending")
        plain.check('input[name="id:a3"]')
        plain.get_by_role("button", name="Cancel selected").click()
        expect(plain.locator("#confirm-question")).to_have_text(
            "Cancel 1 selected job (a3)? Running ones are killed."
        )
        plain.get_by_role("link", name="No, go back").click()
        assert plain.url == url + "/jobs?state=pending"
        assert state("a3") == ["pending"]
        plain.check('input[name="id:a3"]')
        plain.get_by_role("button", name="Cancel selected").click()
        plain.get_by_role("button", name="Yes, go ahead").click()
        expect(plain.locator("#notice")).to_have_text("cancelled 1 job")
        assert state("a3") == ["cancelled"]
        # select-all without JavaScript: a link that ticks the page
        plain.get_by_role("link", name="select all on this page").click()
        expect(plain.locator("input[data-pick]:checked")).to_have_count(4)  # a1, a2, a4, o1
        browser.close()
    api.close()
    assert not [m for m in console if "Content Security Policy" in m], console
