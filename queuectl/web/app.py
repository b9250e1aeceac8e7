"""create_app(client): the dashboard's pages and actions (server-rendered, no JS build)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from queuectl import errors, ids, models, policy, records
from queuectl import stats as stats_mod
from queuectl.client import Client
from queuectl.durations import format_duration
from queuectl.safetext import command_line
from queuectl.web import charts, processes, security, times

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.metrics import Metrics

HERE = Path(__file__).parent
PAGE_SIZE = 50
DLQ_SHOWN = 500  # dead jobs listed on the DLQ page; a purge reaches every match, shown or not
DLQ_SCAN = 20  # pages of DLQ_SHOWN read at most to find the dead jobs older than a filter
MAX_BULK = DLQ_SHOWN  # ids in one bulk form: the jobs list shows PAGE_SIZE, the DLQ DLQ_SHOWN
# A question for a form that carried `confirm=ask` (a no-JS browser, or a script asking):
# (the question, where "no" goes back to); None means the action needs no confirming.
Confirm = Callable[[Request, dict[str, str]], tuple[str, str] | None]


def create_app(
    client: Client | Backend,
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: frozenset[str] | None = None,
) -> Starlette:
    """The dashboard over a Client (or a bare Backend, wrapped in one with default
    settings). `allowed_hosts` (see security.allowed_hosts) are the names a request's
    Host may carry; None accepts any, for an app embedded behind something that checks:
    `queuectl dashboard` always passes them."""
    if not isinstance(client, Client):
        client = Client.over(client)
    views = _Views(client, token=token, read_only=read_only)
    return Starlette(
        routes=views.routes(),
        middleware=[Middleware(_Guard, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={errors.QueuectlError: _failed},
    )


def job_url(job_id: str, action: str = "") -> str:
    """The job's page, or one of its actions. A browser resolves the path segments `.` and
    `..` (also written `%2E%2E`) before it sends a request, so `/jobs/..` would be `/`: those
    two ids travel in the query string instead. Other ids keep readable paths."""
    if job_id in (".", ".."):
        return f"/job{'/' + action if action else ''}?id={quote(job_id, safe='')}"
    return f"/jobs/{quote(job_id, safe=':')}{'/' + action if action else ''}"


def _job_id(request: Request) -> str:
    """The id from `/jobs/<id>/…`, or from `/job…?id=<id>` (those routes have no path id)."""
    if "job_id" in request.path_params:
        return str(request.path_params["job_id"])
    return request.query_params.get("id", "")


def _failed(request: Request, exc: Exception) -> Response:
    """A queuectl error a page did not expect (a NUL in a Postgres search, the database
    gone) as its status and one line, instead of a 500 with a traceback in the log."""
    assert isinstance(exc, errors.QueuectlError)
    return PlainTextResponse(str(exc), status_code=_status(exc))


class _Views:
    """Every page and action; each reads and writes the database through the Client alone."""

    def __init__(self, client: Client, *, token: str | None, read_only: bool) -> None:
        self.client = client
        self.token = token
        self.read_only = read_only
        self._metrics: Metrics | None = None
        self._histories: dict[str, tuple[float, list[models.HistoryBucket]]] = {}
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(
            iso=models.iso,
            duration=format_duration,
            states=list(models.JobState),
            job_url=job_url,
            ago=times.relative,
            run_time=times.run_time,
            awaits=times.awaits,
        )

    def routes(self) -> list[Route | Mount]:
        act = self.action
        return [
            Route("/", self.overview),
            Route("/jobs", self.jobs),
            # POST only: a GET of /jobs/bulk is still the page of a job named `bulk`
            Route("/jobs/bulk", act(self.bulk, confirm=self.ask_bulk), methods=["POST"]),
            Route(
                "/jobs/{job_id:path}/cancel",
                act(self.cancel, confirm=self.ask_cancel),
                methods=["POST"],
            ),
            Route("/jobs/{job_id:path}/retry", act(self.retry), methods=["POST"]),
            Route("/jobs/{job_id:path}", self.job),
            # the same three for any id given as `?id=` (see job_url)
            Route("/job", self.job),
            Route("/job/cancel", act(self.cancel, confirm=self.ask_cancel), methods=["POST"]),
            Route("/job/retry", act(self.retry), methods=["POST"]),
            Route("/dlq", self.dlq),
            Route("/dlq/retry", act(self.dlq_retry, confirm=self.ask_dlq_retry), methods=["POST"]),
            Route("/dlq/purge", act(self.dlq_purge, confirm=self.ask_purge), methods=["POST"]),
            Route("/workers", self.workers),
            Route("/workers/stop", act(self.stop_workers, confirm=self.ask_stop), methods=["POST"]),
            Route("/workers/{worker_id:path}/stop", act(self.stop_worker), methods=["POST"]),
            # names in the query, as for jobs (/job?id=): a schedule named `..` or `a/b`
            # cannot survive a path, which browsers normalise and routes split on `/`
            Route("/worker/stop", act(self.stop_worker), methods=["POST"]),
            Route("/schedules", self.schedules),
            Route("/schedules/{name}/pause", act(self.pause), methods=["POST"]),
            Route("/schedules/{name}/resume", act(self.resume), methods=["POST"]),
            Route("/schedule/pause", act(self.pause), methods=["POST"]),
            Route("/schedule/resume", act(self.resume), methods=["POST"]),
            Route("/schedule/run", act(self.run_schedule), methods=["POST"]),
            Route(
                "/schedule/remove",
                act(self.remove_schedule, confirm=self.ask_remove_schedule),
                methods=["POST"],
            ),
            # queue names may be `..` too (specs.VALID_QUEUE): in the query, as for schedules
            Route("/queues", self.queues),
            Route("/queue/pause", act(self.pause_queue), methods=["POST"]),
            Route("/queue/resume", act(self.resume_queue), methods=["POST"]),
            Route("/queue/limits", act(self.limit_queue, page=self.queues), methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            Route("/login", self.login),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context |= {"read_only": self.read_only, "csrf": security.csrf_token(request)}
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # --- pages ----------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        client = self.client
        rng = stats_mod.RANGES.get(request.query_params.get("range", ""), stats_mod.RANGES["1h"])
        return self.render(
            request,
            "overview.html",
            stats=client.status(),
            oldest=client.oldest_due(),
            workers=(workers := client.workers()),
            processes=processes.group(workers),
            summary=stats_mod.summarize(client.run_samples(3600), window_s=3600),
            ranges=stats_mod.RANGES.values(),
            range=rng,
            chart=charts.history_svg(self._history(rng), rng),
            retention=policy.shown("retention-completed", client.config_get("retention-completed")),
        )

    def _history(self, rng: stats_mod.Range) -> list[tuple[int, int, int]]:
        """The range's bars, counted by the database; the day and week are kept a minute
        (their bars are 30 min and 4 h wide), so a refresh every 2 s does not count a
        week of attempts every 2 s."""
        now = time.time()
        cached = self._histories.get(rng.key)
        if cached is None or now - cached[0] > min(rng.width_s / 30, 60):
            buckets = self.client.run_history(rng.window_s, width_s=rng.width_s)
            cached = (now, buckets)
            self._histories[rng.key] = cached
        return stats_mod.history(cached[1], rng=rng, now=now)

    def jobs(self, request: Request) -> Response:
        q = request.query_params
        state = q.get("state") or None
        if state is not None and state not in set(models.JobState):
            return self.render(request, "error.html", 400, message=f"unknown state {state!r}")
        search = q.get("q") or None
        found = self._exact(search, state, q.get("queue") or None)
        newer = older = None
        if found is None:
            found, newer, older = self._page(
                state=models.JobState(state) if state else None,
                queue=q.get("queue") or None,
                search=search,
                before=q.get("before") or None,
                after=q.get("after") or None,
            )
        filters = {"state": state or "", "queue": q.get("queue", ""), "q": q.get("q", "")}
        return self.render(
            request,
            "jobs.html",
            jobs=found,
            newer=newer,
            older=older,
            filters=filters,
            listing="/jobs?" + urlencode(filters),
            here=_here(request),
            paged=bool(q.get("before") or q.get("after")),
            select_page=q.get("select") == "page",
            notice=_notice(request),
            now=models.utcnow(),
            counts=self.client.status().by_state,
        )

    def _page(
        self, *, before: str | None, after: str | None, **where: Any
    ) -> tuple[list[models.Job], str | None, str | None]:
        """One page of the list, newest first, and the cursors of the pages above (newer)
        and below (older) it, None where there is none. Keyset paging on the insertion
        order: jobs added while someone pages appear above the first page and shift
        nothing, so paging down and back up neither skips nor repeats a job."""
        list_ = self.client.list
        if after is not None:
            found = list_(after=after, limit=PAGE_SIZE + 1, **where)
            if len(found) > PAGE_SIZE:  # more above this page: it is a page of its own
                page = found[1:]
                return page, page[0].id, page[-1].id
            # the top was reached (or the cursor is gone): that is the first page
        elif before is not None:
            found = list_(before=before, limit=PAGE_SIZE + 1, **where)
            page = found[:PAGE_SIZE]
            older = page[-1].id if len(found) > PAGE_SIZE else None
            # the cursor itself is newer than this page (unless it was deleted meanwhile:
            # then the page is empty, and its link to the first page still leads up)
            return page, page[0].id if page else None, older
        found = list_(limit=PAGE_SIZE + 1, **where)
        return found[:PAGE_SIZE], None, found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None

    def _exact(
        self, search: str | None, state: str | None, queue: str | None
    ) -> list[models.Job] | None:
        """A search that is a job's id is a primary-key lookup, not a scan of every command
        (270 ms over a million jobs)."""
        if not search or not ids.is_valid(search):
            return None
        try:
            job = self.client.get(search)
        except errors.JobNotFound:
            return None
        matches = (state is None or job.state == state) and (queue is None or job.queue == queue)
        return [job] if matches else []

    def job(self, request: Request) -> Response:
        job_id = _job_id(request)
        try:
            found = self.client.get(job_id)
            runs = self.client.runs(job_id)
            dependencies = self.client.dependencies(job_id)
        except errors.JobNotFound:
            return self.render(request, "error.html", 404, message=f"no job with id {job_id!r}")
        return self.render(
            request,
            "job.html",
            job=found,
            runs=runs,
            after=[d for d in dependencies if d.side == "after"],
            dependents=[d for d in dependencies if d.side == "dependent"],
            # `--` before an id such as -rf, which would otherwise read as an option
            cli=f"{command_line('show', job_id)}; {command_line('logs', job_id)}",
        )

    def dlq(self, request: Request) -> Response:
        """The dead jobs matching the filters (as `dlq purge --queue --older-than` takes
        them), how many match in all, and the purge of exactly that set."""
        q = request.query_params
        filters = {
            "queue": q.get("queue", "").strip(),
            "older_than": q.get("older_than", "").strip(),
        }
        context: dict[str, Any] = {
            "filters": filters,
            "filtered": any(filters.values()),
            "here": _here(request),
            "notice": _notice(request),
            "now": models.utcnow(),
            "queues": sorted(n for n, c in self.client.status().by_queue.items() if c.get("dead")),
        }
        try:
            matching = self.client.dlq_count(**_dead_filter(filters))
        except errors.UsageError as exc:
            return self.render(
                request, "dlq.html", 400, jobs=[], matching=0, error=str(exc), **context
            )
        dead = self._dead(**_dead_filter(filters))
        return self.render(request, "dlq.html", jobs=dead, matching=matching, **context)

    def _dead(self, *, queue: str | None, older_than: str | None) -> list[models.Job]:
        """The newest DLQ_SHOWN dead jobs of the filters. Dead jobs are listed by insertion
        order and `older_than` is about when they died, so the pages are read and sifted
        here, at most DLQ_SCAN of them (the count and the purge are exact regardless)."""
        if older_than is None:
            return self.client.dlq(queue=queue, limit=DLQ_SHOWN)
        from queuectl import specs

        # the database's rule (finished_at < now - older_than): a dead job that never ended
        # an attempt (expired before it ran) has no finished_at and is never "older"
        cutoff = models.utcnow() - timedelta(seconds=specs.seconds(older_than, "older_than"))
        shown: list[models.Job] = []
        cursor = None
        for _ in range(DLQ_SCAN):
            batch = self.client.list(
                state=models.JobState.DEAD, queue=queue, before=cursor, limit=DLQ_SHOWN
            )
            shown += [j for j in batch if j.finished_at is not None and j.finished_at < cutoff]
            if len(shown) >= DLQ_SHOWN or len(batch) < DLQ_SHOWN:
                break
            cursor = batch[-1].id
        return shown[:DLQ_SHOWN]

    def workers(self, request: Request) -> Response:
        found = self.client.workers()
        stale_after = self.client.settings.lease_ttl_s / 2
        return self.render(
            request,
            "workers.html",
            workers=found,
            processes=processes.group(found),
            stale_after=stale_after,
            megabytes=records.megabytes,
        )

    def schedules(self, request: Request) -> Response:
        """Every schedule with its next slot (in its own zone), its last fired slot and
        that slot's job."""
        now = models.utcnow()
        rows = []
        for s in self.client.schedules():
            rows.append(
                {"s": s, "next": self.client.next_slot(s, now), "last": self.client.slot_job(s)}
            )
        return self.render(request, "schedules.html", schedules=rows, now=now, local=_local_time)

    def queues(
        self, request: Request, error: str | None = None, form: dict[str, str] | None = None
    ) -> Response:
        """Every queue with its flow settings; with `error`, the limits form that was sent
        back (400), showing the message and the values as they were typed."""
        return self.render(
            request,
            "queues.html",
            400 if error else 200,
            queues=self.client.queues(),
            error=error,
            typed=_queue_form(request, form) if error else {},
        )

    def healthz(self, request: Request) -> Response:
        try:
            self.client.ping()
        except errors.QueuectlError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
        return JSONResponse({"ok": True})

    def metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._metrics is None:  # built on the first scrape, then reused
            from queuectl.metrics import Metrics

            self._metrics = Metrics("dashboard")
            self._metrics.add_queue_collector(
                self.client.backend, lease_ttl_s=self.client.settings.lease_ttl_s
            )
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def login(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        if not self.token:
            return response
        # checked before the cookie is set: a cross-site link to /login?token=WRONG must not
        # replace a working cookie (logging the user out)
        given = request.query_params.get("token", "")
        if not security.same_secret(given, self.token):
            return PlainTextResponse("unauthorized: wrong dashboard token", 401)
        response.set_cookie(security.AUTH_COOKIE, given, httponly=True, samesite="strict")
        return response

    # --- actions --------------------------------------------------------------------------------
    def action(
        self,
        fn: Callable[[Request, dict[str, str]], str],
        *,
        page: Callable[[Request, str, dict[str, str]], Response] | None = None,
        confirm: Confirm | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """POST only, CSRF-checked, refused in read-only mode; redirects back when done.
        A UsageError from an action with a `page` (a form's bad value) renders that page
        with the message, for the user to correct, instead of a bare line. A form of an
        action with `confirm` that says `confirm=ask` gets a page asking the question,
        whose button posts the same fields again with `confirm=yes`: the confirmation of
        a browser without JavaScript (live.js asks in a dialog and sends `yes` itself)."""

        async def endpoint(request: Request) -> Response:
            form = await request.form()
            fields = {k: str(v) for k, v in form.multi_items()}
            if self.read_only:
                return PlainTextResponse("read-only dashboard", status_code=403)
            if not security.csrf_ok(request, fields.get("csrf")):
                return PlainTextResponse("bad or missing CSRF token", status_code=403)
            try:
                if confirm is not None and fields.get("confirm") == "ask":
                    asked = await run_in_threadpool(confirm, request, fields)
                    if asked is not None:
                        return self._confirm_page(request, fields, *asked)
                target = await run_in_threadpool(fn, request, fields)
            except errors.QueuectlError as exc:
                if page is not None and isinstance(exc, errors.UsageError):
                    return await run_in_threadpool(page, request, str(exc), fields)
                return PlainTextResponse(str(exc), status_code=_status(exc))
            return RedirectResponse(target, status_code=303)

        return endpoint

    def _confirm_page(
        self, request: Request, fields: dict[str, str], question: str, back: str
    ) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        query = request.url.query
        # the path as the browser sent it: a job id such as `a%2Fb` must not be re-split
        target = raw.decode("latin-1") + (f"?{query}" if query else "")
        again = [(k, v) for k, v in fields.items() if k != "confirm"]
        return self.render(
            request, "confirm.html", question=question, target=target, fields=again, back=back
        )

    def cancel(self, request: Request, form: dict[str, str]) -> str:
        job_id = _job_id(request)
        self.client.cancel(job_id)
        return _local(form.get("next")) or job_url(job_id)

    def ask_cancel(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        job_id = _job_id(request)
        job = self.client.get(job_id)
        killed = " It is running: its process is killed." if job.state == "processing" else ""
        return f"Cancel job {job_id}?{killed}", _local(form.get("next")) or job_url(job_id)

    def bulk(self, request: Request, form: dict[str, str]) -> str:
        """Cancel or retry the jobs ticked on the jobs list. Each job where that is still
        possible: the list was read a while ago, and a job that completed since must not
        undo the cancelling of the others (the CLI's `cancel A B` is all or nothing; a
        page of checkboxes is not a transaction the user wrote)."""
        verb = form.get("do", "")
        if verb not in ("cancel", "retry"):
            raise errors.UsageError("do must be cancel or retry")
        chosen = _chosen(form)
        if verb == "cancel":
            done, skipped = _each(self.client.cancel_many, chosen)
        else:
            done, skipped = _each(self.client.retry_many, chosen)
        past = {"cancel": "cancelled", "retry": "retried"}[verb]
        return _with_notice(_local(form.get("next")) or "/jobs", past, done, skipped)

    def ask_bulk(self, request: Request, form: dict[str, str]) -> tuple[str, str] | None:
        if form.get("do") != "cancel":  # retrying loses nothing: no question
            return None
        chosen = _chosen(form)
        shown = ", ".join(chosen[:5]) + (", …" if len(chosen) > 5 else "")
        return (
            f"Cancel {len(chosen)} selected job{_s(len(chosen))} ({shown})? "
            "Running ones are killed.",
            _local(form.get("next")) or "/jobs",
        )

    def retry(self, request: Request, form: dict[str, str]) -> str:
        job_id = _job_id(request)
        self.client.retry(job_id)
        return _local(form.get("next")) or job_url(job_id)

    def dlq_retry(self, request: Request, form: dict[str, str]) -> str:
        back = _local(form.get("next")) or "/dlq"
        if form.get("all"):
            return _with_notice(back, "retried", self.client.dlq_retry_all(), 0)
        if any(k.startswith("id:") for k in form):
            done, skipped = _each(self.client.dlq_retry, _chosen(form))
            return _with_notice(back, "retried", done, skipped)
        return back

    def ask_dlq_retry(self, request: Request, form: dict[str, str]) -> tuple[str, str] | None:
        if not form.get("all"):  # the ticked ones: retrying loses nothing, no question
            return None
        n = self.client.dlq_count()
        return f"Retry all {n} dead job{_s(n)}, of every queue?", _local(form.get("next")) or "/dlq"

    def dlq_purge(self, request: Request, form: dict[str, str]) -> str:
        """Delete the dead jobs the DLQ page's filters match, exactly as `queuectl dlq purge
        --queue Q --older-than D` would: a filter, not the ids shown, so a job that died
        since the page was read and matches goes too (the question says how many now)."""
        gone = self.client.dlq_purge(**_dead_filter(form))
        return _with_notice(_local(form.get("next")) or "/dlq", "purged", gone, 0)

    def ask_purge(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        n = self.client.dlq_count(**_dead_filter(form))
        return (
            f"Delete {n} dead job{_s(n)}{_which(form)} and their attempts? This cannot be undone.",
            _local(form.get("next")) or "/dlq",
        )

    def stop_workers(self, request: Request, form: dict[str, str]) -> str:
        self.client.stop_workers()
        return "/workers"

    def ask_stop(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        n = len({(w.host, w.pid) for w in self.client.workers()})
        return (
            f"Drain every worker? {n} live process{'es' if n != 1 else ''}: each finishes "
            "its running jobs, claims no more and exits.",
            "/workers",
        )

    def stop_worker(self, request: Request, form: dict[str, str]) -> str:
        worker_id = _named(request, "worker_id", "id")
        if not self.client.stop_workers([worker_id]):
            raise errors.NotFound(f"no live worker {worker_id!r}")
        return "/workers"

    def pause(self, request: Request, form: dict[str, str]) -> str:
        self.client.pause_schedule(_named(request, "name", "name"))
        return "/schedules"

    def resume(self, request: Request, form: dict[str, str]) -> str:
        self.client.resume_schedule(_named(request, "name", "name"))
        return "/schedules"

    def run_schedule(self, request: Request, form: dict[str, str]) -> str:
        """Enqueue the schedule's job now; on to that job's page, to watch it run."""
        return job_url(self.client.run_schedule(_named(request, "name", "name")).id)

    def remove_schedule(self, request: Request, form: dict[str, str]) -> str:
        self.client.remove_schedule(_named(request, "name", "name"))
        return "/schedules"

    def ask_remove_schedule(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        name = _named(request, "name", "name")
        found = {s.name: s for s in self.client.schedules()}.get(name)
        if found is None:
            raise errors.NotFound(f"no schedule named {name!r}")
        return (
            f"Remove the schedule {name} ({found.cron}, {found.tz})? It fires no more; "
            "jobs it already enqueued stay.",
            "/schedules",
        )

    def pause_queue(self, request: Request, form: dict[str, str]) -> str:
        self.client.pause_queues([_named(request, "name", "name")])
        return "/queues"

    def resume_queue(self, request: Request, form: dict[str, str]) -> str:
        self.client.resume_queues([_named(request, "name", "name")])
        return "/queues"

    def limit_queue(self, request: Request, form: dict[str, str]) -> str:
        """Set the limits the form sends; an empty field removes that limit, a field not
        sent keeps it. The Client parses both before it writes: one bad value, no change."""
        typed = _queue_form(request, form)
        limits = {k: (v.strip() or None) for k, v in typed.items() if k != "name"}
        self.client.set_queue(typed.get("name", ""), **limits)
        return "/queues"


def _local_time(at: Any, tz: str) -> str:
    """A slot as the schedule's wall clock with its offset (2030-01-01 03:00 +01:00); in
    UTC for a schedule without a zone."""
    if at is None:
        return "-"
    from queuectl.cron import zone

    local = at.astimezone(zone(tz))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {'UTC' if tz == 'UTC' else offset[:3] + ':' + offset[3:]}"


def _named(request: Request, path_param: str, query_param: str) -> str:
    """The name an action is for: in the path (old links) or the query (what pages emit)."""
    name = request.path_params.get(path_param) or request.query_params.get(query_param)
    if not name:
        raise errors.UsageError(f"which one? give ?{query_param}=")
    return str(name)


def _queue_form(request: Request, form: dict[str, str] | None) -> dict[str, str]:
    """A limits form: the queue's name (the query's, for a listed queue; a field, for the
    form that names a new one) and the limit fields it sent."""
    form = form or {}
    typed: dict[str, str] = {k: form[k] for k in ("concurrency", "rate") if k in form}
    typed["name"] = request.query_params.get("name") or form.get("name", "").strip()
    return typed


_NOTICE_KEYS = ("done", "n", "skipped")
_DONE = {"cancelled": "jobs", "retried": "jobs", "purged": "dead jobs"}


def _here(request: Request) -> str:
    """This page's path and query, less a notice and a select-all: where its forms return."""
    kept = [
        (k, v) for k, v in request.query_params.multi_items() if k not in (*_NOTICE_KEYS, "select")
    ]
    return request.url.path + (f"?{urlencode(kept)}" if kept else "")


def _with_notice(target: str, done: str, n: int, skipped: int) -> str:
    """`target` with what an action did in its query, for the page to say so."""
    counts = urlencode({"done": done, "n": n, "skipped": skipped})
    return f"{target}{'&' if '?' in target else '?'}{counts}"


def _notice(request: Request) -> str | None:
    """The line saying what the last action did. From the query, so only a verb of a closed
    set and two numbers are taken from it: a link cannot make the page say anything else."""
    q = request.query_params
    noun = _DONE.get(q.get("done", ""))
    n, skipped = (_count(q.get(k, "0")) for k in ("n", "skipped"))
    if noun is None or n is None or skipped is None:
        return None
    line = f"{q['done']} {n} {noun if n != 1 else noun[:-1]}"
    if skipped:
        line += f"; {skipped} skipped: not in a state that allows it any more"
    return line


def _count(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _chosen(form: dict[str, str]) -> list[str]:
    """The ids a form ticked: one `id:<id>` field per checkbox (a dict of the form keeps one
    value per name, so each box has a name of its own), in page order, each once."""
    chosen = list(dict.fromkeys(v for k, v in form.items() if k.startswith("id:")))
    if not chosen:
        raise errors.UsageError("select one or more jobs first")
    if len(chosen) > MAX_BULK:
        raise errors.UsageError(f"at most {MAX_BULK} jobs at once, not {len(chosen)}")
    return chosen


def _each(many: Callable[[list[str]], list[models.Job]], ids: list[str]) -> tuple[int, int]:
    """(done, skipped): `many` over every id in one transaction, the common case; if one of
    them refuses (it finished, or is gone, since the page was read), which leaves all
    unchanged, then one id at a time, skipping those that refuse."""
    try:
        return len(many(ids)), 0
    except (errors.InvalidTransition, errors.NotFound):
        pass
    done = 0
    for job_id in ids:
        try:
            many([job_id])
        except (errors.InvalidTransition, errors.NotFound):
            continue
        done += 1
    return done, len(ids) - done


def _dead_filter(form: Mapping[str, str]) -> dict[str, str | None]:
    """The DLQ filters of a page's query or a purge form, for Client.dlq_count / dlq_purge
    (which check them); an empty field is no filter."""
    return {k: (form.get(k) or "").strip() or None for k in ("queue", "older_than")}


def _which(form: Mapping[str, str]) -> str:
    f = _dead_filter(form)
    queue = f" of queue {f['queue']}" if f["queue"] else ""
    return queue + (f" dead longer than {f['older_than']}" if f["older_than"] else "")


def _local(target: str | None) -> str | None:
    """Only same-site paths: a `next` field must not redirect anywhere else."""
    return target if target and target.startswith("/") and not target.startswith("//") else None


def _status(exc: errors.QueuectlError) -> int:
    return {2: 400, 3: 404, 4: 409, 69: 503}.get(exc.exit_code, 500)


class _Guard(BaseHTTPMiddleware):
    """Before any page or action: the Host (every path), the Origin of a POST, the token
    (all but /healthz, /login and /static/). After: the security headers, and the CSRF
    cookie once."""

    def __init__(self, app: Any, token: str | None, allowed_hosts: frozenset[str] | None) -> None:
        super().__init__(app)
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        response: Response
        if not security.host_ok(request, self.allowed_hosts):
            response = PlainTextResponse(
                "unknown Host: add this name with --allowed-host or "
                "QUEUECTL_DASHBOARD_ALLOWED_HOSTS",
                400,
            )
        elif request.method not in ("GET", "HEAD") and not security.origin_ok(request):
            response = PlainTextResponse("cross-origin request refused", 403)
        elif not path.startswith(("/healthz", "/login", "/static/")) and not security.authorized(
            request, self.token
        ):
            response = PlainTextResponse("unauthorized: a dashboard token is required", 401)
        else:
            response = await call_next(request)
            new = getattr(request.state, "new_csrf", None)
            if new and not request.cookies.get(security.CSRF_COOKIE):
                response.set_cookie(security.CSRF_COOKIE, new, httponly=True, samesite="strict")
        response.headers.update(security.HEADERS)
        if not path.startswith("/static/"):
            # pages show commands and output: no copy in a shared or back-button cache
            response.headers["Cache-Control"] = "no-store"
        return response
