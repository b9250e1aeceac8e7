"""`queuectl dashboard`: the web UI (Starlette, served by uvicorn)."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Annotated

import typer

from queuectl import errors
from queuectl.cli.context import CTX


def dashboard(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8080,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A name browsers reach the dashboard by (repeatable; * for any); replaces "
            "QUEUECTL_DASHBOARD_ALLOWED_HOSTS. Its address and localhost always work.",
        ),
    ] = None,
) -> None:
    """Serve the web dashboard; off localhost it requires QUEUECTL_DASHBOARD_TOKEN.

    Example: QUEUECTL_DASHBOARD_TOKEN=s3cret queuectl dashboard --host 0.0.0.0 --port 8080
    """
    from queuectl.web import security

    settings = CTX.settings
    token = settings.dashboard_token or None
    public = not security.is_local(host)
    if public and not token:
        raise errors.UsageError(
            f"refusing to serve on {host} without QUEUECTL_DASHBOARD_TOKEN (anyone who can "
            "reach it could cancel and retry jobs); set a token or bind 127.0.0.1"
        )
    if token and (problem := security.token_problem(token, public=public)):
        # the reason only, never the token: this line lands in logs
        raise errors.UsageError(
            f"refusing to serve on {host}: QUEUECTL_DASHBOARD_TOKEN {problem} "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    # flags over the environment, as for every setting
    names = allowed_host if allowed_host else settings.dashboard_allowed_hosts
    try:
        allowed_hosts = security.allowed_hosts(host, names)
    except ValueError as exc:
        raise errors.UsageError(f"bad allowed host: {exc}") from None
    # bound here, before anything starts: a port in use is one clear line (uvicorn would
    # log its own message and exit 3, the code for "not found"), and the socket is handed to
    # uvicorn, so nothing can take the port in between
    sock = _bind(host, port)
    import structlog
    import uvicorn

    from queuectl.cli import runtime
    from queuectl.web.app import create_app

    runtime.start_process("dashboard", pool_size=4, metrics_port=None)
    app = create_app(
        CTX.client(),  # the one start_process opened, with its pool of 4
        token=token,
        read_only=read_only,
        allowed_hosts=allowed_hosts,
    )

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM after shutting down (exit 143); like `worker start`, a
        # requested stop is a clean exit 0, so our handler only asks it to finish
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def stop() -> None:
        server.should_exit = True

    runtime.on_stop_signals(stop)
    shown = f"[{host}]" if ":" in host else host
    # a log event, not a bare line: a container logging JSON gets it as JSON too
    structlog.get_logger("queuectl").info("dashboard_serving", url=f"http://{shown}:{port}/")
    server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise errors.UsageError(f"cannot serve on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise errors.UsageError(
                f"port {port} on {host} is in use (another dashboard?): pick one with --port"
            ) from None
        raise errors.UsageError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    # listening from here on: a browser opened at the URL printed below waits in the
    # backlog until uvicorn serves, instead of being refused
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
