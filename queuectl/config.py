"""Process settings: how this process connects and behaves (defaults < TOML file <
QUEUECTL_* env < flags). The queue policy every worker shares lives in the database: see
queuectl/policy.py."""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queuectl import errors
from queuectl.durations import parse_duration

if TYPE_CHECKING:
    # served lazily by __getattr__ below, for callers that predate queuectl/policy.py
    from queuectl.policy import policy_from_rows as policy_from_rows


def default_db_url(environ: Mapping[str, str]) -> str:
    """A SQLite file in the user data dir, so every terminal of a user sees the same queue."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")) / ".local/share")
    return f"sqlite:///{Path(base).expanduser() / 'queuectl' / 'queuectl.db'}"


@dataclass(frozen=True, slots=True)
class Settings:
    """How this process connects and behaves; queue policy is in `Policy` (the database)."""

    database_url: str
    lease_ttl_s: float = 10.0  # a lost worker's job is recovered this long after its last beat
    heartbeat_s: float = 2.0  # leases are renewed this often: 5 beats fit in one lease
    recovery_every_s: float = 2.0  # every worker process sweeps expired leases this often
    poll_interval_s: float = 1.0  # the longest an idle worker waits before looking again
    kill_grace_s: float = 5.0  # SIGTERM -> SIGKILL for timed-out or cancelled jobs
    hostname: str = ""  # how this host is named in leases (default: the OS hostname)
    leader_ttl_s: float = 10.0  # an orchestrator leader that stops renewing is replaced after
    dashboard_token: str = ""  # required by `dashboard` on any address but localhost
    # names besides its address that `dashboard` answers to in Host (anti DNS rebinding)
    dashboard_allowed_hosts: tuple[str, ...] = ()
    # this worker's own allowed-commands: the database's list can narrow it, never widen it
    allowed_commands: tuple[str, ...] | None = None
    log_format: str = "auto"
    log_level: str = "info"
    # the most database connections a worker or orchestrator process pools (its LISTEN
    # connection aside); 0: the role's default (a worker: 1; an orchestrator: 2)
    db_pool_size: int = 0


_ENV = {
    "database_url": "QUEUECTL_DATABASE_URL",
    "lease_ttl_s": "QUEUECTL_LEASE_TTL",
    "heartbeat_s": "QUEUECTL_HEARTBEAT",
    "recovery_every_s": "QUEUECTL_RECOVERY_EVERY",
    "poll_interval_s": "QUEUECTL_POLL_INTERVAL",
    "kill_grace_s": "QUEUECTL_KILL_GRACE",
    "hostname": "QUEUECTL_HOSTNAME",
    "leader_ttl_s": "QUEUECTL_LEADER_TTL",
    "dashboard_token": "QUEUECTL_DASHBOARD_TOKEN",
    "dashboard_allowed_hosts": "QUEUECTL_DASHBOARD_ALLOWED_HOSTS",
    "allowed_commands": "QUEUECTL_ALLOWED_COMMANDS",
    "log_format": "QUEUECTL_LOG_FORMAT",
    "log_level": "QUEUECTL_LOG_LEVEL",
    "db_pool_size": "QUEUECTL_DB_POOL_SIZE",
}
_TOML_KEYS = {name: name.removesuffix("_s").replace("_", "-") for name in _ENV}


def load_settings(
    flags: Mapping[str, object],
    *,
    environ: Mapping[str, str] = os.environ,
    path: Path | None = None,
) -> Settings:
    """Defaults < TOML file < QUEUECTL_* env < CLI flags (a None flag means 'not given')."""
    explicit = path is not None or "QUEUECTL_CONFIG" in environ
    path = path or Path(environ.get("QUEUECTL_CONFIG", "queuectl.toml"))
    merged: dict[str, tuple[object, str]] = {"database_url": (default_db_url(environ), "default")}
    for name, value in _read_toml(path, explicit=explicit).items():
        merged[name] = (value, str(path))
    for name, var in _ENV.items():
        if var in environ:
            merged[name] = (environ[var], var)
    for name, value in flags.items():
        if value is not None:
            merged[name] = (value, "flag")
    return _build(merged)


def _read_toml(path: Path, *, explicit: bool) -> dict[str, object]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise errors.ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise errors.ConfigError(f"config file {path}: {exc}") from None
    import tomllib  # most calls have no config file: only they pay for the parser

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"config file {path}: {exc}") from None
    by_key = {v: k for k, v in _TOML_KEYS.items()} | {"database-url": "database_url"}
    out: dict[str, object] = {}
    for key, value in data.items():
        if key not in by_key:
            raise errors.ConfigError(f"config file {path}: unknown key {key!r}")
        out[by_key[key]] = value
    return out


def _build(merged: Mapping[str, tuple[object, str]]) -> Settings:
    kwargs: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in merged:
            continue
        value, source = merged[f.name]
        if f.name.endswith("_s"):
            try:
                seconds = parse_duration(str(value), what=f"{_TOML_KEYS[f.name]} (from {source})")
            except errors.UsageError as exc:
                raise errors.ConfigError(str(exc)) from None
            if seconds <= 0:
                raise errors.ConfigError(f"{_TOML_KEYS[f.name]} (from {source}) must be > 0")
            kwargs[f.name] = seconds
        elif f.name in _CONVERT:
            kwargs[f.name] = _CONVERT[f.name](value, source)
        elif f.name == "allowed_commands":
            try:
                kwargs[f.name] = _allowed_commands(value)
            except ValueError as exc:
                raise errors.ConfigError(f"allowed-commands (from {source}): {exc}") from None
        else:
            kwargs[f.name] = str(value)
    if kwargs.get("log_format", "auto") not in {"auto", "console", "json"}:
        raise errors.ConfigError("log-format must be one of auto, console, json")
    if kwargs.get("log_level", "info") not in {"debug", "info", "warning", "error"}:
        raise errors.ConfigError("log-level must be one of debug, info, warning, error")
    settings = Settings(**kwargs)
    # a lease must outlive several missed beats, or live jobs get recovered (and run twice)
    if settings.heartbeat_s * 3 > settings.lease_ttl_s:
        raise errors.ConfigError(
            f"heartbeat ({settings.heartbeat_s:g}s) must be at most a third of lease-ttl "
            f"({settings.lease_ttl_s:g}s)"
        )
    return settings


def _pool_size(value: object, source: str) -> int:
    try:
        size = int(str(value).strip())
    except ValueError:
        size = -1
    if not 0 <= size <= 64:
        raise errors.ConfigError(f"db-pool-size (from {source}) must be a whole number, 0 to 64")
    return size


def _names(value: object, source: str = "") -> tuple[str, ...]:
    """A comma-separated string (the environment) or a list (TOML); blanks dropped. The
    dashboard checks each is a host name: parsing them here would import it on every call."""
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(name for item in items if (name := str(item).strip()))


_CONVERT: dict[str, Callable[[object, str], Any]] = {
    "dashboard_allowed_hosts": _names,
    "db_pool_size": _pool_size,
}


def _allowed_commands(value: object) -> tuple[str, ...] | None:
    from queuectl import allowlist  # only a call that meets a list pays for the module

    return allowlist.parse(value)


if not TYPE_CHECKING:  # the type checker sees the import above, and no other name

    def __getattr__(name: str) -> Any:
        # `config.policy_from_rows` moved to queuectl/policy.py; the backends still call it
        if name == "policy_from_rows":
            from queuectl import policy

            return policy.policy_from_rows
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
