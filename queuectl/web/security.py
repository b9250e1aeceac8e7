"""Dashboard access: Host and Origin checks, a bearer token, and CSRF tokens for every POST."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

CSRF_COOKIE = "queuectl_csrf"
AUTH_COOKIE = "queuectl_token"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (recognised, not bound)
MIN_PUBLIC_TOKEN = 16
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")

# `default-src 'none'` and then only what the pages use: the stylesheet, live.js (which
# fetches the page it is on) and forms that post back here. No inline script or style, so
# an HTML-injection bug could not run script even if escaping failed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def host_name(value: str) -> str | None:
    """The name in a Host header (or an allowed-host entry): lower case, without the port,
    the IPv6 brackets or a trailing dot; None when it is not a well-formed host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or not is_address(name):
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
        name = name.removesuffix(".")
        if not name or not all(c in _NAME_CHARS for c in name):
            return None
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The names requests may carry in Host: the loopback names, the bound address unless it
    is a wildcard, and `extra` (from --allowed-host); None, meaning any, if `extra` has `*`.
    Raises ValueError naming an entry that is not a host name."""
    names = set(LOCAL_HOSTS)
    if bind not in WILDCARD_BINDS:
        names.add(host_name(f"[{bind}]" if ":" in bind else bind) or bind)
    for entry in extra:
        if entry.strip() == "*":
            return None
        name = host_name(entry)
        if name is None:
            raise ValueError(f"{entry!r} is not a host name (give it as name or name:port)")
        names.add(name)
    return frozenset(names)


def host_ok(request: Request, allowed: frozenset[str] | None) -> bool:
    """Whether the request's Host is one of the dashboard's names. A page whose DNS name was
    rebound to this address sends its own name, so this is what stops it reading pages and
    posting with the cookies it was given. Any IP address is accepted: a browser sends an
    address only for a page loaded from that address, i.e. from the dashboard itself, and
    it keeps probes and `http://<ip>:port` working without configuration."""
    if allowed is None:
        return True
    name = host_name(request.headers.get("host", ""))
    return name is not None and (name in allowed or is_address(name))


def origin_ok(request: Request) -> bool:
    """A POST's Origin, when the browser sends one, must be this Host: another port of the
    same host (which can toss cookies) or a rebound name is refused, and so is `null`."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


def _bytes(text: str) -> bytes:
    # hmac.compare_digest refuses str with non-ASCII characters (a TypeError, then a 500):
    # compare bytes; surrogatepass so that even a lone surrogate cannot raise
    return text.encode("utf-8", "surrogatepass")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets, whatever characters they hold."""
    return bool(given) and hmac.compare_digest(_bytes(given), _bytes(expected))


def authorized(request: Request, token: str | None) -> bool:
    """With a token configured: `Authorization: Bearer T`, or the cookie `/login` set."""
    if not token:
        return True
    header = request.headers.get("authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    given = given or request.cookies.get(AUTH_COOKIE, "")
    return same_secret(given, token)


def token_problem(token: str, *, public: bool) -> str | None:
    """Why this token cannot guard the dashboard, or None. It travels in headers and cookies,
    so only printable ASCII without spaces survives the trip; beyond loopback it is the only
    lock, so it must be long enough not to be guessed."""
    if not all(33 <= ord(c) <= 126 for c in token):
        return "must be printable ASCII without spaces or control characters"
    if public and len(token) < MIN_PUBLIC_TOKEN:
        return f"is shorter than {MIN_PUBLIC_TOKEN} characters (off loopback it is the only lock)"
    return None


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
    return bool(cookie and submitted) and same_secret(str(cookie), str(submitted))
