"""The dashboard in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
# Chromium on a closed network: no background fetches, no sandbox as root
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def open_page(pw: Any) -> tuple[Any, Any, list[str]]:
    """Chromium with one 1280x800 page; the list collects the console's messages (anything
    the Content-Security-Policy blocks is reported there)."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    return browser, page, console


def serve(cli: Cli, *, workers: int) -> Iterator[str]:
    """A dashboard (and a worker process with `workers` slots, if any) on `cli`'s database,
    stopped on the way out; yields its address."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("Debian's chromium is not installed")
    port = free_port()
    procs = [cli.popen("dashboard", "--port", str(port))]
    if workers:
        procs.append(cli.popen("worker", "start", "--count", str(workers)))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=20)
        yield url
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Cli]]:
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    for url in serve(cli, workers=2):
        yield url, cli


@pytest.fixture
def quiet_site(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Cli]]:
    """A dashboard and no worker (nothing changes but what the test does), on each backend."""
    cli = Cli(db_url, tmp_path)
    for url in serve(cli, workers=0):
        yield url, cli


def test_a_job_appears_runs_and_is_retried_from_the_dlq(site: tuple[str, Cli]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, cli = site
    # README's screenshots come from this test: SCREENSHOTS=$PWD/docs/screenshots
    shots = Path(os.environ.get("SCREENSHOTS", cli.cwd / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, console = open_page(pw)
        page.goto(url + "/")
        page.select_option("#refresh-interval", "2")
        page.evaluate("window.__notReloaded = true")
        completed = page.locator('[data-state="completed"]')
        expect(completed).to_have_text("0")
        cli.enqueue({"id": "hello", "command": "echo hello from the browser test"})
        # the live refresh picks up the job's completion without a reload
        expect(completed).to_have_text("1", timeout=15_000)
        assert page.evaluate("window.__notReloaded") is True
        # (the overview's screenshot is taken below, with a day of history on its chart)

        for i in range(4):
            cli.enqueue({"command": f"sleep 0.{i}; echo item {i}", "queue": "mail"})
        cli.enqueue({"id": "flaky", "command": "echo nope >&2; exit 3", "max_retries": 0})
        page.goto(url + "/jobs")
        expect(page.locator("#jobs")).to_contain_text("hello")
        page.screenshot(path=str(shots / "jobs.png"), full_page=True)

        page.goto(url + "/jobs/hello")
        expect(page.locator("pre.output")).to_have_text("hello from the browser test\n")
        page.screenshot(path=str(shots / "job.png"), full_page=True)

        page.goto(url + "/dlq")
        expect(page.locator("#dlq")).to_contain_text("flaky", timeout=15_000)
        page.screenshot(path=str(shots / "dlq.png"), full_page=True)
        page.check('input[name="id:flaky"]')
        page.click("text=Retry selected")
        expect(page.locator("#notice")).to_have_text("retried 1 job")  # back on /dlq, saying so
        # it runs again (and fails again): a second attempt appears on its page
        page.goto(url + "/jobs/flaky")
        expect(page.locator("section.run")).to_have_count(2, timeout=15_000)

        # a job whose id the browser would resolve as a path segment (`/jobs/..` is `/`):
        # its link and its Cancel button still reach it
        cli.enqueue({"id": "..", "command": "true", "delay": "1h"})
        page.goto(url + "/jobs")
        page.get_by_role("link", name="..", exact=True).click()
        expect(page.locator("h1 code")).to_have_text("..")
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(page.locator("#job-state")).to_have_text("cancelled")
        expect(page.locator("h1 code")).to_have_text("..")
        browser.close()
    assert not [m for m in console if "Content Security Policy" in m], console
    assert cli.json("show", "flaky", "--json")["runs"][1]["exit_code"] == 3


def test_queues_are_paused_resumed_and_limited_and_blocked_jobs_link_their_dependencies(
    quiet_site: tuple[str, Cli],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from queuectl import Client

    url, cli = quiet_site
    shots = Path(os.environ.get("SCREENSHOTS", cli.cwd / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    cli.enqueue({"id": "extract", "command": "echo extract", "queue": "etl", "delay": "1h"})
    cli.enqueue({"id": "load", "command": "echo load", "queue": "etl", "after": ["extract"]})
    for i in range(3):
        cli.enqueue({"command": f"echo mail {i}", "queue": "mail"})
    api = Client(cli.url)

    def flow(queue: str) -> tuple[bool, int | None, str | None]:
        (q,) = [q for q in api.queues() if q["name"] == queue]
        return q["paused"], q["concurrency"], q["rate"]

    with sync_playwright() as pw:
        browser, page, console = open_page(pw)
        page.goto(url + "/")
        page.get_by_role("link", name="Queues", exact=True).click()
        page.wait_for_url(url + "/queues")
        # the live refresh swaps the page under the pointer: stop it for the clicks below
        page.click("#refresh-toggle")
        mail = page.locator('tr[data-queue="mail"]')
        etl = page.locator('tr[data-queue="etl"]')
        expect(etl).to_contain_text("active")

        mail.get_by_role("button", name="Pause", exact=True).click()
        page.wait_for_url(url + "/queues")
        expect(mail.locator(".badge")).to_have_text("paused")
        assert flow("mail") == (True, None, None)
        mail.get_by_role("button", name="Resume", exact=True).click()
        expect(mail.locator(".badge")).to_have_text("active")
        assert flow("mail") == (False, None, None)

        mail.get_by_label("concurrency of mail").fill("2")
        mail.get_by_label("rate of mail").fill("10/1s")
        mail.get_by_role("button", name="Set", exact=True).click()
        expect(mail).to_contain_text("0 / 2")
        assert flow("mail") == (False, 2, "10/1s")
        # a bad value: the message on the page, the form as typed, nothing changed
        mail.get_by_label("concurrency of mail").fill("-5")
        mail.get_by_role("button", name="Set", exact=True).click()
        expect(page.locator("#form-error")).to_contain_text("concurrency must be between 0")
        expect(mail.get_by_label("concurrency of mail")).to_have_value("-5")
        assert flow("mail") == (False, 2, "10/1s")
        etl.get_by_role("button", name="Pause", exact=True).click()
        expect(etl.locator(".badge")).to_have_text("paused")
        page.click("#refresh-toggle")  # live again, as the screenshot's header shows
        page.screenshot(path=str(shots / "queues.png"), full_page=True)

        # the blocked job: a tab of the jobs list, and links both ways on the job pages
        page.goto(url + "/jobs")
        page.locator(".tabs a", has_text="blocked").click()
        rows = page.locator("#jobs tbody tr")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("blocked")
        rows.get_by_role("link", name="load", exact=True).click()
        expect(page.locator("#job-state")).to_have_text("blocked")
        expect(page.locator("#after")).to_contain_text("extract pending")
        page.locator("#after").get_by_role("link", name="extract").click()
        expect(page.locator("h1 code")).to_have_text("extract")
        expect(page.locator("#dependents")).to_contain_text("load blocked")
        page.locator("#dependents").get_by_role("link", name="load").click()
        expect(page.locator("h1 code")).to_have_text("load")
        browser.close()
    api.close()
    assert not [m for m in console if "Content Security Policy" in m], console


def test_schedules_run_now_and_remove_workers_per_process_and_history_ranges(
    site: tuple[str, Cli],
) -> None:
    """Issue 18 (11, 12) in Chromium: run a schedule now, remove one (the dialog declined,
    then accepted), a worker process with its slots folded inside, the history chart's
    ranges; and the screenshots of those pages."""
    import sqlite3

    from playwright.sync_api import expect, sync_playwright

    from queuectl import Client
    from queuectl.cron import Cron

    url, cli = site
    shots = Path(os.environ.get("SCREENSHOTS", cli.cwd / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    go = cli.cwd / "go"
    add = ("schedule", "add")
    assert (
        cli(
            *add,
            "nightly-report",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "-c",
            "echo report",
            "--queue",
            "reports",
        ).returncode
        == 0
    )
    assert cli(*add, "hourly-sync", "--cron", "0 * * * *", "-c", "echo sync").returncode == 0
    assert cli(*add, "weekly-cleanup", "--cron", "@weekly", "-c", "echo clean").returncode == 0
    for i in range(12):
        cli.enqueue({"command": f"echo {i}", "queue": "mail" if i % 3 else "default"})
    for i in range(3):
        cli.enqueue({"command": f"echo no >&2; exit {i + 1}", "max_retries": 0})
    done = {"completed": 12, "dead": 3}
    wait_for(lambda: cli.json("status", "--json")["jobs"].items() >= done.items(), timeout=30)
    # a day of history: attempts moved back by whole hours (rows aged, never clocks)
    db = cli.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE queuectl_runs"
            " SET finished_at = finished_at - 3600 * (unicode(substr(job_id, -1)) % 9)"
        )
    cli.enqueue({"id": "long-export", "command": f"while [ ! -e {go} ]; do sleep 0.1; done"})
    api = Client(cli.url)
    (nightly,) = [s for s in api.schedules() if s.name == "nightly-report"]
    slot = Cron.parse(nightly.cron, nightly.tz).latest_at_or_before(datetime.now(UTC))
    assert slot is not None and api.backend.fire_schedule(nightly.name, slot)
    try:
        with sync_playwright() as pw:
            browser, page, console = open_page(pw)

            page.goto(url + "/schedules")
            page.click("#refresh-toggle")  # the clicks below must not race a refresh
            row = page.locator('tr[data-schedule="nightly-report"]')
            expect(row.locator("td.next")).to_contain_text("02:30 +0")
            expect(row.locator("td.last")).to_contain_text("nightly-report:")
            row.get_by_role("button", name="Run now").click()
            expect(page.locator("h1 code")).to_contain_text("nightly-report:now-")
            page.click("#refresh-toggle")  # live again (the pause is remembered): it runs
            expect(page.locator("#job-state")).to_have_text("completed", timeout=15_000)
            expect(page.locator("pre.output")).to_have_text("report\n")

            page.goto(url + "/schedules")
            page.click("#refresh-toggle")
            hourly = page.locator('tr[data-schedule="hourly-sync"]')
            page.once("dialog", lambda dialog: dialog.dismiss())
            hourly.get_by_role("button", name="Remove").click()
            expect(hourly).to_have_count(1)
            assert "hourly-sync" in [s.name for s in api.schedules()]
            asked: list[str] = []

            def accept(dialog: Any) -> None:
                asked.append(dialog.message)
                dialog.accept()

            page.once("dialog", accept)
            page.locator('tr[data-schedule="weekly-cleanup"]').get_by_role(
                "button", name="Remove"
            ).click()
            expect(page.locator('tr[data-schedule="weekly-cleanup"]')).to_have_count(0)
            assert asked == [
                "Remove the schedule weekly-cleanup? It fires no more; jobs it "
                "already enqueued stay."
            ]
            assert sorted(s.name for s in api.schedules()) == ["hourly-sync", "nightly-report"]
            page.click("#refresh-toggle")
            page.screenshot(path=str(shots / "schedules.png"), full_page=True)

            page.goto(url + "/workers")
            process = page.locator("tbody.process")
            expect(process).to_have_count(1)
            expect(process.locator("td.slots")).to_have_text("1 / 2")
            expect(process.locator("td.rss")).to_contain_text("MiB")
            expect(process.locator("details")).to_have_attribute("open", "")
            expect(process.locator("table.slots")).to_contain_text("long-export")
            expect(process.locator("td.done")).not_to_have_text("-", timeout=10_000)
            page.screenshot(path=str(shots / "workers.png"), full_page=True)

            page.goto(url + "/")
            page.get_by_role("link", name="24 h", exact=True).click()
            chart = page.locator("svg#throughput")
            expect(chart).to_have_attribute("data-range", "24h")
            expect(chart.locator("rect.bad")).not_to_have_count(0)
            expect(chart.locator(".tick-label")).to_have_count(8)
            expect(page.locator(".ranges a.active")).to_have_text("24 h")
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            browser.close()
    finally:
        go.touch()  # the long job ends: the worker drains at once on the way out
        api.close()
    assert not [m for m in console if "Content Security Policy" in m], console
