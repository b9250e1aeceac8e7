"""A watchdog process that SIGKILLs a worker's running jobs the moment the worker dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

_BATCH_S = 0.05  # the watchdog reads this often: a dead worker's jobs die this soon
_PIPE_BYTES = 1 << 20  # asked for (Linux allows unprivileged pipes up to 1 MiB)


class Lifeline:
    """The worker's side. Jobs run in their own sessions, so a SIGKILLed worker (OOM killer,
    `kill -9`) used to leave them running until a recovery sweep on the same host found them
    by their environment: on another host, never, and meanwhile the retry could start there
    and run next to the orphan. The watchdog holds the read end of a pipe only this process
    writes to; the kernel closes the write end when the worker dies, however it dies, and the
    watchdog then kills every process group it was told is running."""

    def __init__(self) -> None:
        # its own session: Ctrl-C in a terminal reaches the worker (which drains), not the
        # watchdog; close_fds: no job pipe or socket of the worker is held open by it
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "queuectl.lifeline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        # room for ~100,000 lines between two of the watchdog's reads; a full pipe means it is
        # stuck, and a job's thread must never block on it
        with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ: Linux only
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        os.set_blocking(self._fd, False)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def watch(self, pgid: int) -> None:
        """A job's process group started: kill it if this process dies."""
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """The group is over: called before its leader is reaped, so before its id can be
        reused by an unrelated group that the watchdog would then kill."""
        self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """A clean exit: the watchdog kills whatever is still listed (nothing, after a drain)
        and exits."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _send(self, line: bytes) -> None:
        with self._lock:
            if self._proc is None:
                return
            try:
                # one write of fewer than PIPE_BUF bytes: whole or not at all
                if os.write(self._fd, line) == len(line):
                    return
            except OSError as exc:
                error = str(exc)
            else:
                error = "short write"
            # The watchdog died or stopped reading. A missed "forget" would leave it holding
            # an id that may be reused, so it must not outlive this: kill it and go on with
            # recovery sweeps as the only way orphans are found.
            proc, self._proc = self._proc, None
        import structlog  # here: the watchdog process itself never logs, and starts lean

        structlog.get_logger("queuectl.lifeline").warning("lifeline_lost", error=error)
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def main() -> None:
    """The watchdog: `+PGID` and `-PGID` lines until end of file, then SIGKILL what is left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(0, _PIPE_BYTES):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                pgid = int(line[1:])
                if line.startswith(b"+"):
                    groups.add(pgid)
                elif line.startswith(b"-"):
                    groups.discard(pgid)
        # Read in batches: woken for every line, this process would take a core's tenth at
        # 1,500 jobs/s; a pause lets a worker's lines pile up in the pipe (1,500 jobs/s is
        # ~25 KB/s), and a death is still acted on within the pause.
        time.sleep(_BATCH_S)
    # The group of each job's shell, and every process that left it but not the session
    # (`set -m` gives each background job a group of its own; `env -i` sheds the marker the
    # recovery sweep looks for). Each id is a job's shell's pid, not yet reaped (the worker
    # forgets a group before its reap), so it still names that job's session.
    from queuectl import sessions  # stdlib only: the watchdog starts lean

    for pgid in groups:
        sessions.kill(pgid)


if __name__ == "__main__":
    main()
