"""Settings: process settings (defaults < TOML file < QUEUECTL_* env < flags) and the
validated queue-policy keys that live in the database so every worker shares them."""

# no `from __future__ import annotations`: a NamedTuple with string annotations compiles
# each of them at import, on every CLI call
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from queuectl import errors, models
from queuectl.durations import parse_duration


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
        elif f.name == "dashboard_allowed_hosts":
            kwargs[f.name] = _names(value)
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


# --- queue policy: `queuectl config set/get/list`, stored in the database -----------------


def _int_at_least(low: int, *, high: int | None = None) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}")
        return value

    return parse


def _number(
    low: float, high: float = math.inf, *, open_low: bool = False
) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (open_low and value == low) or value > high:
            bound = f"> {low:g}" if open_low else f">= {low:g}"
            raise ValueError(f"must be {bound}" + (f" and <= {high:g}" if high < math.inf else ""))
        return value

    return parse


MAX_POLICY_SECONDS = 366 * 86400.0  # a year: larger waits and limits are typos, and overflow


def _seconds(*, nullable: bool, most: float) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if nullable and text.strip().lower() in {"none", "null", ""}:
            return None
        seconds = parse_duration(text, what="value")
        if nullable and seconds == 0:
            return None  # 0 means no limit
        if seconds < 0.001:
            raise ValueError("must be at least 1ms")
        if seconds > most:
            raise ValueError(f"must be at most {most / 86400:g}d")
        return seconds

    return parse


def _names(value: object) -> tuple[str, ...]:
    """A comma-separated string (the environment) or a list (TOML); blanks dropped. The
    dashboard checks each is a host name: parsing them here would import it on every call."""
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(name for item in items if (name := str(item).strip()))


def _allowed_commands(value: object) -> tuple[str, ...] | None:
    from queuectl import allowlist  # only a call that meets a list pays for the module

    return allowlist.parse(value)


class PolicyKey(NamedTuple):
    # a NamedTuple, not a dataclass: defining a dataclass costs every CLI call ~1 ms
    key: str
    attr: str  # the models.Policy field
    parse: Callable[[str], object]
    help: str


POLICY_KEYS: dict[str, PolicyKey] = {
    k.key: k
    for k in (
        PolicyKey(
            "max-retries",
            "max_retries",
            _int_at_least(0, high=1000),
            "retries after the first attempt; snapshotted on each job at enqueue",
        ),
        PolicyKey(
            "backoff-base",
            "backoff_base",
            _number(1.0, 1000.0),
            "retry delay = backoff-base ^ attempts seconds, read when a failure happens",
        ),
        PolicyKey(
            "backoff-max",
            "backoff_max_s",
            _seconds(nullable=False, most=MAX_POLICY_SECONDS),
            "cap on one retry delay (seconds or 30s/5m/1h)",
        ),
        PolicyKey(
            "backoff-jitter",
            "backoff_jitter",
            _number(0.0, 1.0),
            "random spread of each delay as a fraction (0 = exact)",
        ),
        PolicyKey(
            "job-timeout",
            "job_timeout_s",
            _seconds(nullable=True, most=MAX_POLICY_SECONDS),
            "default wall-clock limit of one attempt (none = no limit)",
        ),
        PolicyKey(
            "output-limit",
            "output_limit",
            # a worker holds up to this much of each running job's output in memory and
            # stores it every heartbeat: 64 MiB is already far past what anyone reads
            _int_at_least(1024, high=64 * 1024 * 1024),
            "bytes of each attempt's output kept (the tail)",
        ),
        PolicyKey(
            "retention-completed",
            "retention_completed_s",
            _seconds(nullable=True, most=10 * MAX_POLICY_SECONDS),
            "completed and cancelled jobs are deleted this long after finishing (none = keep)",
        ),
        PolicyKey(
            "retention-dead",
            "retention_dead_s",
            _seconds(nullable=True, most=10 * MAX_POLICY_SECONDS),
            "dead jobs (the DLQ) are purged this long after dying (none = keep)",
        ),
        PolicyKey(
            "allowed-commands",
            "allowed_commands",
            _allowed_commands,
            'JSON array of command patterns workers may run, e.g. ["echo *"] (none = any)',
        ),
    )
}


def policy_key(key: str) -> PolicyKey:
    spec = POLICY_KEYS.get(key)
    if spec is None:
        raise errors.UsageError(
            f"unknown config key {key!r} (known: {', '.join(sorted(POLICY_KEYS))})"
        )
    return spec


def parse_policy_value(key: str, text: str) -> object:
    """The typed value for `config set`; UsageError naming the key on bad input."""
    spec = policy_key(key)
    try:
        return spec.parse(text)
    except (ValueError, errors.UsageError) as exc:
        raise errors.UsageError(f"bad value for {key}: {exc}") from None


def policy_from_rows(rows: Mapping[str, str]) -> models.Policy:
    """Stored text values over the defaults; a value that no longer parses is ignored."""
    policy = models.Policy()
    changes: dict[str, object] = {}
    for key, text in rows.items():
        spec = POLICY_KEYS.get(key)
        if spec is None:
            continue
        try:
            changes[spec.attr] = spec.parse(text)
        except (ValueError, errors.UsageError):
            if key == "allowed-commands":
                # fail closed: a list someone broke by hand must not become "run anything"
                changes[spec.attr] = ()
            continue
    return policy.replace(**changes)


def policy_text(value: object) -> str:
    """How a typed policy value is stored and printed."""
    if value is None:
        return "none"
    if isinstance(value, tuple):  # allowed-commands
        from queuectl import allowlist

        return allowlist.text(value)
    if isinstance(value, float):
        # fixed notation: "1e-05" would not parse back as a duration
        return str(int(value)) if value.is_integer() else f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)
