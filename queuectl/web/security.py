"""Dashboard access: a bearer token (required off-localhost) and CSRF tokens for every POST."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

CSRF_COOKIE = "queuectl_csrf"
AUTH_COOKIE = "queuectl_token"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def authorized(request: Request, token: str | None) -> bool:
    """With a token configured: `Authorization: Bearer T`, or the cookie `/login` set."""
    if not token:
        return True
    header = request.headers.get("authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    given = given or request.cookies.get(AUTH_COOKIE, "")
    return bool(given) and hmac.compare_digest(given, token)


def csrf_token(request: Request) -> str:
    """The token forms must echo: the cookie's, or a new one the response will set."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return str(token)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Double submit: the form's token must equal the cookie's, which another site's page
    can neither read nor set."""
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted) and hmac.compare_digest(str(cookie), str(submitted))
