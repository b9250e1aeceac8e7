"""Runs one shell command: its own process group, a timeout, an output tail, kills."""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from queuectl import models, sessions

if TYPE_CHECKING:
    from queuectl.lifeline import Lifeline

TRUNCATION_MARK = "[queuectl: output truncated: {dropped} of {total} bytes dropped, tail follows]\n"
_MARK_PREFIX = TRUNCATION_MARK.split("{", 1)[0]
SHELL = "/bin/sh"
_READ_CHUNK = 1 << 16  # a pipe's default capacity: one read can empty it
_READS_PER_WAKE = 16  # then look at the clock again (timeouts, ticks) even if more is coming
_TRIM_SLACK = 1 << 20  # the tail may grow this far past the limit before it is cut back
# after the exit, read at most this much more: a process that left the job's group (setsid)
# may still hold the pipe and write forever
_DRAIN_MAX = 16 << 20
# What a heartbeat stores of a running job's output (`logs` and `logs --follow` meanwhile):
# the whole tail, up to an output-limit of 64 MiB per job every 2 s, took a heartbeat longer
# than a lease on SQLite, and its jobs were fenced. The complete tail is written once, at
# the end of the attempt.
LIVE_TAIL = 256 << 10


class Runner:
    """One attempt of one job. `start()`, then `wait()` in the job's thread; `kill()` from any
    thread (timeout, cancel, lost lease, forced shutdown) ends the whole process group."""

    def __init__(
        self,
        command: str,
        *,
        env: Mapping[str, str],
        timeout_s: float | None,
        kill_grace_s: float,
        output_limit: int,
        lifeline: Lifeline | None = None,
    ) -> None:
        self.command = command
        self.lifeline = lifeline
        self.env = dict(env)
        self.timeout_s = timeout_s
        self.kill_grace_s = kill_grace_s
        self.output_limit = output_limit
        # Output comes through a pipe that wait() reads as the job writes, keeping only the
        # tail in memory. (A temporary file held everything the job printed: 1 GB of disk
        # for a job that printed 1 GB, and `yes` without a timeout filled the disk.)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._out = open(read_fd, "rb", buffering=0)  # noqa: SIM115 (closed in wait)
        self._sink: io.FileIO | None = open(write_fd, "wb", buffering=0)  # noqa: SIM115
        self._tail = bytearray()  # the last output bytes: at most output_limit + _TRIM_SLACK
        self._total = 0  # every byte the job wrote
        self._proc: subprocess.Popen[bytes] | None = None
        # guards _proc, the kill state and the output file against the heartbeat thread,
        # which reads the output and may kill the job while the job's own thread waits on it
        self._lock = threading.Lock()
        self._kill_reason: models.OutcomeKind | None = None
        self._kill_deadline: float | None = None
        self._last_size = -1
        self._pidfd: int | None = None
        self._session: str | None = None
        self._reaped = False

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> str | None:
        """Spawn the command; an error text when it could not even start."""
        with self._lock:
            try:
                # shell=False with an explicit /bin/sh -c: the command is the user's program
                self._proc = subprocess.Popen(
                    [SHELL, "-c", self.command],
                    stdin=subprocess.DEVNULL,
                    stdout=self._sink,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,  # own process group: a kill reaches every child
                    close_fds=True,
                )
            except OSError as exc:
                self._out.close()
                return f"could not start {SHELL}: {exc}"
            finally:
                # only the job holds the write end now
                assert self._sink is not None
                self._sink.close()
                self._sink = None
            killed_early = self._kill_reason is not None
            self._pidfd = _open_pidfd(self._proc.pid)
            if self.lifeline is not None:
                self.lifeline.watch(self._proc.pid)  # the group id is the shell's pid
        if killed_early:
            self._signal(signal.SIGKILL)  # a kill that came before the process existed
        return None

    def wait(
        self, *, on_tick: Callable[[], None] | None = None, tick_s: float = 0.5
    ) -> models.Outcome:
        started = time.monotonic()
        deadline = None if self.timeout_s is None else started + self.timeout_s
        proc = self._proc
        assert proc is not None, "start() first"
        poller = select.poll()
        poller.register(self._out.fileno(), select.POLLIN)
        if self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        while True:
            now = time.monotonic()
            waits = [tick_s]
            if deadline is not None and self._kill_reason is None:
                waits.append(max(0.0, deadline - now))
            if self._kill_deadline is not None:
                waits.append(max(0.0, self._kill_deadline - now))
            if self._wait_exit(proc, max(0.01, min(waits)), poller):
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline and self._kill_reason is None:
                self.kill(models.OutcomeKind.TIMED_OUT)
            if self._kill_deadline is not None and now >= self._kill_deadline:
                self._signal(signal.SIGKILL)
                self._kill_deadline = None
            if on_tick is not None:
                on_tick()
        # The attempt ends with its shell, and so does everything it left running in its
        # group (`sleep 1000 &`, a forgotten daemon): nothing of a finished job lives on
        # unwatched. With a pidfd the shell is not reaped yet, so its pid (the group's id)
        # cannot have been reused by an unrelated group.
        self._signal(signal.SIGKILL)
        if self._kill_reason is not None:
            # a killed attempt (timeout, cancel, lost lease, forced stop) is retried, maybe
            # at once: whatever of it moved to another group of its session (`set -m`) must
            # not run next to the retry. Only then: the /proc scan costs ~1.5 ms, too much
            # for every job at hundreds of jobs a second.
            sessions.kill(proc.pid)
        if self.lifeline is not None:
            self.lifeline.forget(proc.pid)  # before the reap frees the id for reuse
        with self._lock:
            self._reaped = True  # from now on, the group id may be reused
        code = proc.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._drain()
        with self._lock:
            output, total = self._read_output()
            self._out.close()
            self._tail = bytearray()  # up to output-limit: not kept while the result waits
        return self._outcome(code, output, total, time.monotonic() - started)

    def kill(self, reason: models.OutcomeKind) -> None:
        """SIGTERM to the group now, SIGKILL after the grace period (checked by wait())."""
        with self._lock:
            if self._kill_reason is not None:
                return
            self._kill_reason = reason
            self._kill_deadline = time.monotonic() + self.kill_grace_s
        self._signal(signal.SIGTERM)

    def force_kill(self, reason: models.OutcomeKind) -> None:
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = reason
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP the job's group (its worker is being suspended)."""
        with self._lock:
            if not self._reaped:  # a reaped shell's id may name someone else's group now
                self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        with self._lock:
            if not self._reaped:
                self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def output(self) -> tuple[str, int]:
        """The captured tail (with a truncation mark when cut) and the total bytes written."""
        with self._lock:
            self._read_locked(_READS_PER_WAKE)
            return self._read_output()

    def _wait_exit(
        self, proc: subprocess.Popen[bytes], timeout_s: float, poller: select.poll
    ) -> bool:
        """True once the shell has exited (unreaped, with a pidfd) within `timeout_s`,
        reading its output meanwhile. A pidfd wakes the wait the moment the child exits;
        without one (not Linux), the child is looked at every 50 ms."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._pidfd is None and proc.poll() is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._pidfd is None:
                left = min(left, 0.05)
            for fd, _ in poller.poll(left * 1000):
                if fd == self._pidfd:
                    return True
                if not self._read_some(_READS_PER_WAKE):
                    poller.unregister(fd)  # end of file: every writer is gone

    def _read_some(self, reads: int) -> bool:
        """Up to `reads` reads of what the pipe holds; False at end of file."""
        with self._lock:
            return self._read_locked(reads)

    def _read_locked(self, reads: int) -> bool:
        # under the lock: the heartbeat thread reads too (output_if_changed), and the
        # chunks must join the tail in the order they left the pipe
        if self._out.closed:
            return False
        for _ in range(reads):
            try:
                chunk = os.read(self._out.fileno(), _READ_CHUNK)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._total += len(chunk)
            self._tail += chunk
            if len(self._tail) > self.output_limit + _TRIM_SLACK:
                del self._tail[: len(self._tail) - self.output_limit]
        return True

    def _drain(self) -> None:
        """What the job wrote just before it ended (its group is dead by now)."""
        self._read_some(_DRAIN_MAX // _READ_CHUNK)

    def _read_output(self, limit: int | None = None) -> tuple[str, int]:
        if self._out.closed:
            return "", 0
        total = self._total
        keep = self.output_limit if limit is None else min(limit, self.output_limit)
        # decoded straight from a view of the tail: at output-limit 64 MiB, each copy is
        # 64 MiB more for every slot that finishes at that moment
        data = memoryview(self._tail)[max(0, len(self._tail) - keep) :]
        start = total - len(data)
        with data:
            text = str(data, "utf-8", errors="replace")
            first = data[0] if data else 0
        if "\x00" in text:
            text = text.replace("\x00", "\ufffd")
        if start:
            if text and (first & 0xC0) == 0x80:
                text = text.lstrip("\ufffd")  # the cut landed inside a multi-byte character
            text = TRUNCATION_MARK.format(dropped=start, total=total) + text
        return text, total

    @property
    def session_tag(self) -> str | None:
        """`PID:START` of the job's session (sessions.tag), for heartbeats. Read at the first
        heartbeat that finds the job running, not at every spawn (most jobs end before one);
        under the lock, and only before the reap, so the pid is still the job's."""
        with self._lock:
            if self._session is None and self._proc is not None and not self._reaped:
                self._session = sessions.tag(self._proc.pid)
            return self._session

    def output_if_changed(self) -> tuple[str, int] | None:
        """For heartbeats: the last LIVE_TAIL bytes of output so far, or None when nothing
        was written since."""
        with self._lock:
            if self._out.closed:
                return None
            self._read_locked(_READS_PER_WAKE)  # what came since wait() last read
            size = self._total
            if size == self._last_size:
                return None
            self._last_size = size
            return self._read_output(LIVE_TAIL)

    def _outcome(self, code: int, output: str, total: int, duration: float) -> models.Outcome:
        kind, error = _classify(code, self._kill_reason, self.timeout_s)
        return models.Outcome(
            kind=kind,
            exit_code=code,
            error=error,
            output=output,
            output_bytes=total,
            duration_s=duration,
        )


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (Linux >= 5.3), or None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _classify(
    code: int, killed: models.OutcomeKind | None, timeout_s: float | None
) -> tuple[models.OutcomeKind, str | None]:
    if killed is models.OutcomeKind.TIMED_OUT:
        return killed, f"timed out after {timeout_s:g}s"
    if killed is models.OutcomeKind.CANCELLED:
        return killed, "cancelled"
    if killed is models.OutcomeKind.INTERRUPTED:
        return killed, "interrupted: worker shut down"
    if killed is models.OutcomeKind.LOST:
        return killed, "lease lost"
    if code == 0:
        return models.OutcomeKind.SUCCEEDED, None
    if code == 127:
        return models.OutcomeKind.FAILED, "command not found (exit code 127)"
    if code == 126:
        return models.OutcomeKind.FAILED, "command not executable (exit code 126)"
    if code < 0:
        return models.OutcomeKind.FAILED, f"killed by signal {signal.Signals(-code).name}"
    return models.OutcomeKind.FAILED, f"exit code {code}"


def without_mark(text: str) -> str:
    """Stored output without the truncation marker line, if it has one."""
    if text.startswith(_MARK_PREFIX):
        return text.split("\n", 1)[1] if "\n" in text else ""
    return text


def spawn_failure(error: str) -> models.Outcome:
    return models.Outcome(models.OutcomeKind.FAILED, exit_code=None, error=error)


def job_env(job: models.Job, base: Mapping[str, str]) -> dict[str, str]:
    """The job's environment: the worker's, plus who it is (DESIGN.md §4)."""
    return {
        **base,
        "QUEUECTL_JOB_ID": job.id,
        "QUEUECTL_ATTEMPT": str(job.attempts),
        "QUEUECTL_QUEUE": job.queue,
        # lets a recovering worker on this host find the orphaned processes of this run
        "QUEUECTL_LEASE": f"{job.id}#{job.lease_token}",
    }
