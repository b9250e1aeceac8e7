"""The processes of one session on this host, found through /proc and killed together."""

from __future__ import annotations

import contextlib
import os
import signal

# A job's shell starts a session of its own (start_new_session), and its pid is the id of
# both the session and the first process group. A job can leave the group (`set -m`, job
# control gives every background job a group) or clear its environment (`env -i`), but it
# can leave the session only with setsid(), so the session is what a kill must cover.


def members(session: int) -> list[int]:
    """Every process of `session`, except this process's own session (never ours to kill)."""
    if session <= 0 or session == os.getsid(0):
        return []
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit() and session_of(int(name)) == session:
            found.append(int(name))
    return found


def session_of(pid: int) -> int | None:
    """The process's session id (field 6 of /proc/PID/stat)."""
    return _stat_field(pid, 6)


def start_time(pid: int) -> int | None:
    """When the process started (field 22 of /proc/PID/stat, clock ticks after boot)."""
    return _stat_field(pid, 22)


def _stat_field(pid: int, field: int) -> int | None:
    """A numeric field of /proc/PID/stat, counted from 1 as proc(5) does; the fields are
    read after the command name (field 2), which may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[field - 3])
    except (OSError, ValueError, IndexError):
        return None


def age_s() -> float | None:
    """Seconds since this process started (its exec, before Python itself started)."""
    started = start_time(os.getpid())
    try:
        with open("/proc/uptime", "rb") as uptime:
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if started is None else max(0.0, up - started / os.sysconf("SC_CLK_TCK"))


def tag(pid: int) -> str | None:
    """`PID:START`, what a heartbeat records so that another process on this host can later
    kill this session and be sure it is still the same one (see `kill_tagged`)."""
    started = start_time(pid)
    return None if started is None else f"{pid}:{started}"


def kill_tagged(tagged: str) -> int:
    """`kill` the session a `tag` names, unless its id now belongs to another process: a
    session's id stays taken while any of its members lives, so if the leader is gone, every
    process still in that session is the job's; if a process with that id runs and started
    at another time, the job's session is over and the id was reused."""
    try:
        pid_text, _, start_text = tagged.partition(":")
        session, started = int(pid_text), int(start_text)
    except ValueError:
        return 0
    now_started = start_time(session)
    if now_started is not None and now_started != started:
        return 0
    return kill(session)


def kill(session: int) -> int:
    """SIGKILL the session's first group, then every member that moved to another group;
    returns the members killed that way. The caller knows the id is still the job's (its
    shell is not reaped yet, or `kill_tagged` checked)."""
    if session <= 0 or session == os.getsid(0):
        return 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signal.SIGKILL)
    killed = 0
    for pid in members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed
