"""create_app(client): the dashboard's pages and actions (server-rendered, no JS build)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from queuectl import errors, ids, models
from queuectl import stats as stats_mod
from queuectl.client import Client
from queuectl.durations import format_duration
from queuectl.safetext import command_line
from queuectl.web import security

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.metrics import Metrics

HERE = Path(__file__).parent
PAGE_SIZE = 50


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
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(
            iso=models.iso,
            duration=format_duration,
            states=list(models.JobState),
            job_url=job_url,
        )

    def routes(self) -> list[Route | Mount]:
        act = self.action
        return [
            Route("/", self.overview),
            Route("/jobs", self.jobs),
            Route("/jobs/{job_id:path}/cancel", act(self.cancel), methods=["POST"]),
            Route("/jobs/{job_id:path}/retry", act(self.retry), methods=["POST"]),
            Route("/jobs/{job_id:path}", self.job),
            # the same three for any id given as `?id=` (see job_url)
            Route("/job", self.job),
            Route("/job/cancel", act(self.cancel), methods=["POST"]),
            Route("/job/retry", act(self.retry), methods=["POST"]),
            Route("/dlq", self.dlq),
            Route("/dlq/retry", act(self.dlq_retry), methods=["POST"]),
            Route("/workers", self.workers),
            Route("/workers/stop", act(self.stop_workers), methods=["POST"]),
            Route("/workers/{worker_id:path}/stop", act(self.stop_worker), methods=["POST"]),
            # names in the query, as for jobs (/job?id=): a schedule named `..` or `a/b`
            # cannot survive a path, which browsers normalise and routes split on `/`
            Route("/worker/stop", act(self.stop_worker), methods=["POST"]),
            Route("/schedules", self.schedules),
            Route("/schedules/{name}/pause", act(self.pause), methods=["POST"]),
            Route("/schedules/{name}/resume", act(self.resume), methods=["POST"]),
            Route("/schedule/pause", act(self.pause), methods=["POST"]),
            Route("/schedule/resume", act(self.resume), methods=["POST"]),
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
        samples = client.run_samples(3600)
        bars = stats_mod.timeline(samples, window_s=3600, buckets=12)
        return self.render(
            request,
            "overview.html",
            stats=client.status(),
            oldest=client.oldest_due(),
            workers=client.workers(),
            summary=stats_mod.summarize(samples, window_s=3600),
            bars=bars,
            bar_max=max([ok + bad for ok, bad in bars] + [1]),
        )

    def jobs(self, request: Request) -> Response:
        q = request.query_params
        state = q.get("state") or None
        if state is not None and state not in set(models.JobState):
            return self.render(request, "error.html", 400, message=f"unknown state {state!r}")
        search = q.get("q") or None
        found = self._exact(search, state, q.get("queue") or None)
        if found is None:
            found = self.client.list(
                state=models.JobState(state) if state else None,
                queue=q.get("queue") or None,
                search=search,
                before=q.get("before") or None,
                limit=PAGE_SIZE + 1,
            )
        return self.render(
            request,
            "jobs.html",
            jobs=found[:PAGE_SIZE],
            more=found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None,
            filters={"state": state or "", "queue": q.get("queue", ""), "q": q.get("q", "")},
            counts=self.client.status().by_state,
        )

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
        dead = self.client.dlq(limit=500)
        return self.render(request, "dlq.html", jobs=dead)

    def workers(self, request: Request) -> Response:
        found = self.client.workers()
        stale_after = self.client.settings.lease_ttl_s / 2
        return self.render(request, "workers.html", workers=found, stale_after=stale_after)

    def schedules(self, request: Request) -> Response:
        return self.render(request, "schedules.html", schedules=self.client.schedules())

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
    ) -> Callable[[Request], Awaitable[Response]]:
        """POST only, CSRF-checked, refused in read-only mode; redirects back when done.
        A UsageError from an action with a `page` (a form's bad value) renders that page
        with the message, for the user to correct, instead of a bare line."""

        async def endpoint(request: Request) -> Response:
            form = await request.form()
            fields = {k: str(v) for k, v in form.multi_items()}
            if self.read_only:
                return PlainTextResponse("read-only dashboard", status_code=403)
            if not security.csrf_ok(request, fields.get("csrf")):
                return PlainTextResponse("bad or missing CSRF token", status_code=403)
            try:
                target = await run_in_threadpool(fn, request, fields)
            except errors.QueuectlError as exc:
                if page is not None and isinstance(exc, errors.UsageError):
                    return await run_in_threadpool(page, request, str(exc), fields)
                return PlainTextResponse(str(exc), status_code=_status(exc))
            return RedirectResponse(target, status_code=303)

        return endpoint

    def cancel(self, request: Request, form: dict[str, str]) -> str:
        job_id = _job_id(request)
        self.client.cancel(job_id)
        return _local(form.get("next")) or job_url(job_id)

    def retry(self, request: Request, form: dict[str, str]) -> str:
        job_id = _job_id(request)
        self.client.retry(job_id)
        return _local(form.get("next")) or job_url(job_id)

    def dlq_retry(self, request: Request, form: dict[str, str]) -> str:
        if form.get("all"):
            self.client.dlq_retry_all()
        elif ids := [v for k, v in form.items() if k.startswith("id:")]:
            self.client.dlq_retry(ids)
        return "/dlq"

    def stop_workers(self, request: Request, form: dict[str, str]) -> str:
        self.client.stop_workers()
        return "/workers"

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
