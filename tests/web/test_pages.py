"""Schedules (next and last run, run now, remove), workers per process, and the history chart's
ranges, over HTTP (Starlette's test client) on a real SQLite file and the real Postgres."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import psycopg
import pytest
from starlette.testclient import TestClient

from queuectl import models, stats
from queuectl.backends.base import Backend
from queuectl.cron import Cron
from queuectl.web import charts
from tests.web.test_http import client, csrf, finish


def fire_last_slot(backend: Backend, name: str) -> datetime:
    (schedule,) = [s for s in backend.list_schedules() if s.name == name]
    slot = Cron.parse(schedule.cron, schedule.tz).latest_at_or_before(models.utcnow())
    assert slot is not None
    assert backend.fire_schedule(name, slot)
    return slot


def test_schedules_show_next_and_last_run_in_their_zone_with_the_last_job(
    backend: Backend,
) -> None:
    backend.add_schedule(
        models.Schedule(name="berlin", cron="30 2 * * *", command="true", tz="Europe/Berlin")
    )
    backend.add_schedule(models.Schedule(name="hourly", cron="0 * * * *", command="true"))
    slot = fire_last_slot(backend, "berlin")
    html = client(backend).get("/schedules").text
    berlin = re.search(r'<tr data-schedule="berlin".*?</tr>', html, re.S)
    hourly = re.search(r'<tr data-schedule="hourly".*?</tr>', html, re.S)
    assert berlin and hourly
    # 02:30 Berlin wall clock, +01:00 in winter or +02:00 in summer, both ways
    assert re.search(r"\d{4}-\d\d-\d\d 02:30 \+0[12]:00</time>", berlin.group(0))
    assert re.search(r'class="next">in \d+ h', berlin.group(0))
    assert re.search(r'class="last">\d+ (h|min|s)', berlin.group(0))
    job_id = f"berlin:{slot:%Y%m%dT%H%MZ}"
    assert f'href="/jobs/{job_id}">{job_id}</a>' in berlin.group(0)
    assert "state-pending" in berlin.group(0)
    # no slot fired yet; a UTC schedule shows UTC times
    assert re.search(r'class="last">never', hourly.group(0))
    assert re.search(r"\d\d:00 UTC</time>", hourly.group(0))


def test_a_pruned_last_job_is_not_linked(backend: Backend) -> None:
    backend.add_schedule(models.Schedule(name="daily", cron="@daily", command="true"))
    slot = fire_last_slot(backend, "daily")
    backend.cancel(f"daily:{slot:%Y%m%dT%H%MZ}")
    backend.prune_finished(models.JobState.CANCELLED, older_than_s=-1)
    html = client(backend).get("/schedules").text
    assert "daily:" not in html.split('data-schedule="daily"')[1].split("</tr>")[0]


def test_run_now_enqueues_the_schedules_job_and_shows_it(backend: Backend) -> None:
    backend.add_schedule(
        models.Schedule(
            name="report",
            cron="0 3 * * *",
            command="echo r",
            queue="ops",
            priority=5,
            max_retries=1,
            timeout_s=30,
            paused=False,
        )
    )
    backend.pause_schedule("report", paused=True)  # run now works on a paused one too
    c = client(backend)
    token = csrf(c, "/schedules")
    response = c.post("/schedule/run?name=report", data={"csrf": token})
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/jobs/report:now-[0-9a-z]{16}", location), location
    job = backend.get_job(location.removeprefix("/jobs/"))
    assert (job.command, job.queue, job.priority, job.max_retries, job.timeout_s) == (
        "echo r",
        "ops",
        5,
        1,
        30,
    )
    assert job.state is models.JobState.PENDING
    (after,) = backend.list_schedules()
    assert (after.last_slot, after.fired, after.paused) == (None, 0, True)
    assert c.get(location).status_code == 200
    # an unknown name, a missing name, no CSRF token: refused, nothing enqueued
    assert c.post("/schedule/run?name=nope", data={"csrf": token}).status_code == 404
    assert c.post("/schedule/run", data={"csrf": token}).status_code == 400
    assert c.post("/schedule/run?name=report", data={}).status_code == 403
    assert len(backend.list_jobs(limit=10)) == 1


def test_remove_asks_first_and_deletes_the_schedule(backend: Backend) -> None:
    backend.add_schedule(models.Schedule(name="old", cron="@daily", command="true"))
    c = client(backend)
    html = c.get("/schedules").text
    form = re.search(r'<form method="post" action="/schedule/remove\?name=old"[^>]*>', html)
    assert form and 'data-confirm="Remove the schedule old?' in form.group(0)
    token = csrf(c, "/schedules")
    # a browser without JavaScript sends confirm=ask: a page asks, nothing is removed yet
    asked = c.post("/schedule/remove?name=old", data={"csrf": token, "confirm": "ask"})
    assert asked.status_code == 200
    assert "Remove the schedule old (@daily, UTC)?" in asked.text
    assert [s.name for s in backend.list_schedules()] == ["old"]
    response = c.post("/schedule/remove?name=old", data={"csrf": token, "confirm": "yes"})
    assert (response.status_code, response.headers["location"]) == (303, "/schedules")
    assert backend.list_schedules() == []
    assert c.post("/schedule/remove?name=old", data={"csrf": token}).status_code == 404
    ask = {"csrf": token, "confirm": "ask"}
    assert c.post("/schedule/remove?name=old", data=ask).status_code == 404
    assert (
        client(backend, read_only=True)
        .post("/schedule/run?name=old", data={"csrf": token})
        .status_code
        == 403
    )


def slot(host: str, pid: int, i: int, *, done: int | None, rss: int | None) -> models.WorkerInfo:
    return models.WorkerInfo(
        id=f"{host}-{pid}-{i}", host=host, pid=pid, queues=(), jobs_done=done, rss_bytes=rss
    )


def test_workers_are_listed_per_process_with_their_slots_folded_inside(
    backend: Backend,
) -> None:
    big = [slot("web-1", 41, i, done=d, rss=64 * 2**20) for i, d in ((1, 5), (2, 7), (3, 0))]
    old = [slot("web-2", 7, 1, done=None, rss=None)]  # a worker too old to report them
    backend.heartbeat(big, [], lease_ttl_s=30)
    backend.heartbeat(old, [], lease_ttl_s=30)
    backend.enqueue([models.JobSpec(command="sleep 9", id="busy")])
    (claimed,) = backend.claim(["web-1-41-2"], (), host="web-1", lease_ttl_s=30)
    listed = {w.id: w for w in backend.list_workers(lease_ttl_s=30)}
    assert (listed["web-1-41-2"].jobs_done, listed["web-1-41-2"].rss_bytes) == (7, 64 * 2**20)
    assert listed["web-2-7-1"].to_json()["jobs_done"] is None

    html = client(backend, lease_ttl_s=30).get("/workers").text
    assert "2 processes · 4 slots" in html
    bodies = re.findall(
        r'<tbody class="process[^"]*" data-pid="(\d+)".*?</tbody>\s*</table>', html, re.S
    )
    assert bodies == ["41", "7"]
    web1 = html.split('data-pid="41"')[1].split('data-pid="7"')[0]
    assert '<td class="slots">1 / 3</td>' in web1
    assert '<td class="done">12</td>' in web1
    assert '<td class="rss"' in web1 and "64 MiB" in web1
    assert web1.count("<tr><td>web-1-41-") == 3  # every slot, inside <details>
    assert "<details open>" in web1  # a busy process shows its slots unfolded
    assert f'href="/jobs/{claimed.id}"' in web1
    web2 = html.split('data-pid="7"')[1]
    assert '<td class="done">-</td>' in web2 and "<details>" in web2
    # the process's drain button names its first slot: the whole process drains
    assert "/worker/stop?id=web-1-41-1" in web1
    assert "1 worker process" not in client(backend, lease_ttl_s=30).get("/").text
    assert "2 worker processes, 4 slots" in client(backend, lease_ttl_s=30).get("/").text


def age_runs(url: str, seconds: float) -> None:
    """Every finished attempt moved `seconds` into the past (tests age rows, never clocks)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE queuectl_runs SET finished_at = finished_at - ?", (seconds,))
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE queuectl_runs SET finished_at = finished_at - make_interval(secs => %s)",
                (seconds,),
            )


def totals(html: str) -> tuple[int, int]:
    match = re.search(r'aria-label="attempts finished[^"]*: (\d+) succeeded, (\d+) failed"', html)
    assert match, html
    return int(match.group(1)), int(match.group(2))


def test_history_reaches_back_a_day_and_a_week(backend: Backend, db_url: str) -> None:
    ids = ["w0", "w1", "d0", "d1", "now"]  # claimed in this order (FIFO)
    backend.enqueue([models.JobSpec(command="x", id=i, max_retries=0) for i in ids])
    finish(backend, "w0", ok=True)
    finish(backend, "w1", ok=False)
    age_runs(db_url, 3 * 86400)  # three days ago: the week only
    finish(backend, "d0", ok=True)
    finish(backend, "d1", ok=True)
    age_runs(db_url, 5 * 3600)  # these five hours ago, the first ones 3 d 5 h ago
    finish(backend, "now", ok=True)
    c = client(backend)
    one_hour = c.get("/").text
    assert totals(one_hour) == (1, 0)
    assert 'data-range="1h"' in one_hour and "<title>1 succeeded</title>" in one_hour
    assert totals(c.get("/?range=24h").text) == (3, 0)
    week = c.get("/?range=7d").text
    assert totals(week) == (4, 1)
    assert "<title>1 failed</title>" in week
    # the range tabs, the active one marked; an unknown range is the hour
    assert '<a href="/?range=7d" class="active">7 d</a>' in week
    assert totals(c.get("/?range=bogus").text) == (1, 0)
    # axes: counts on the left, a tick a day on the week's time axis, and the legend
    assert week.count('class="axis-label tick-label"') == 7
    assert "attempts per 4 h · times UTC" in week
    assert '<text class="legend-label"' in week and "succeeded 4" in week
    assert "deleted 7d after they finish" in week or "deleted 604800" in week


def test_history_slices_are_whole_utc_times_and_empty_ones_are_kept() -> None:
    rng = stats.RANGES["24h"]
    now = datetime(2030, 1, 1, 12, 40, tzinfo=UTC).timestamp()
    last = int(datetime(2030, 1, 1, 12, 30, tzinfo=UTC).timestamp())
    bars = stats.history(
        [
            models.HistoryBucket(last, 3, 4),
            models.HistoryBucket(last - 1800 * 47, 1, 1),  # the oldest slice shown
            models.HistoryBucket(last - 1800 * 48, 9, 9),  # one before: outside the range
        ],
        rng=rng,
        now=now,
    )
    assert len(bars) == 48
    assert bars[-1] == (last, 3, 1)
    assert bars[0] == (last - 1800 * 47, 1, 0)
    assert sum(ok + bad for _, ok, bad in bars) == 5
    svg = charts.history_svg(bars, rng)
    # ticks every 3 h at whole UTC hours: 15:00, 18:00, ... 12:00
    labels = re.findall(r'class="axis-label tick-label"[^>]*>([^<]+)<', svg)
    assert labels == ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00"]
    # the count axis: a label at every whole count up to the tallest bar (4)
    assert re.findall(r'text-anchor="end">(\d+)<', svg) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("tallest", "top", "step"),
    [(0, 1, 1), (1, 1, 1), (3, 3, 1), (5, 6, 2), (7, 8, 2), (11, 15, 5), (480, 600, 200)],
)
def test_the_count_axis_has_at_most_four_round_steps(tallest: int, top: int, step: int) -> None:
    assert charts.count_axis(tallest) == (top, step)


def test_the_history_of_a_day_is_counted_once_a_minute_at_most(backend: Backend) -> None:
    c: TestClient = client(backend)
    assert totals(c.get("/?range=24h").text) == (0, 0)
    backend.enqueue([models.JobSpec(command="x", id="late")])
    finish(backend, "late", ok=True)
    assert totals(c.get("/?range=24h").text) == (0, 0)  # kept: a day is not recounted per hit
    assert totals(c.get("/").text) == (1, 0)  # the hour is (its first count, here)
