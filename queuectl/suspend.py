"""Ctrl-Z (SIGTSTP) that stops only this process: never inside a transaction."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

import structlog

from queuectl.backends.base import Backend

log = structlog.get_logger("queuectl.suspend")


class Suspender:
    """The default SIGTSTP stops a process wherever it is, and a SQLite writer stopped
    inside a transaction keeps the file's one write lock: every other worker then waits,
    and their healthy jobs lose their leases. With this, the handler only writes a byte to
    a pipe; a thread waits until no transaction of this process is open (holding new ones
    back), calls `before`, stops the process with SIGSTOP (which cannot be caught), and
    after SIGCONT lets transactions through again and calls `after`."""

    def __init__(
        self,
        backend: Backend,
        *,
        before: Callable[[], None] = lambda: None,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self.before = before
        self.after = after
        self._read, self._write = os.pipe()
        threading.Thread(target=self._loop, name="queuectl-suspend", daemon=True).start()

    def install(self) -> None:
        """Take over SIGTSTP (Ctrl-Z); SIGCONT needs nothing: the stopped thread goes on."""
        signal.signal(signal.SIGTSTP, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self._write, b"z")  # a handler takes no lock: the pipe is enough

    def _loop(self) -> None:
        while True:
            try:
                if not os.read(self._read, 64):
                    return
            except OSError:
                return
            try:
                self.suspend()
            except Exception:  # this thread must outlive a bad suspension
                log.exception("suspend_crashed")

    def suspend(self) -> None:
        with self.backend.hold_writes():
            self.before()
            log.info("process_suspended")
            # to this thread, not the process: kill(getpid()) returns at once and the stop
            # lands later, on whatever another thread is doing by then (found in a test:
            # this thread had already released the gate); signalled itself, this thread
            # stops before the call returns, and the group stop takes the others with it
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        log.info("process_resumed")
        self.after()
