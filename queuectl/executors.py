"""How a claimed job is run: the seam between the worker's loop and a shell (or nothing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from queuectl import allowlist, models
from queuectl.lifeline import Lifeline
from queuectl.runner import Runner, job_env, spawn_failure

if TYPE_CHECKING:
    from queuectl.config import Settings


class Attempt(Protocol):
    """One attempt in progress (runner.Runner is the one we ship). `start()` and `wait()` run
    in the job's thread; the kills, pause/resume and the output come from other threads
    (heartbeat, fence, stop, suspension)."""

    def start(self) -> str | None:
        """Spawn; an error text when it could not even start."""

    def wait(self, *, on_tick: Callable[[], None] | None = None) -> models.Outcome:
        """Until the attempt ends (timeout included), calling `on_tick` every so often."""

    def kill(self, reason: models.OutcomeKind) -> None:
        """End it gracefully (a grace period, then a hard kill); `reason` names the outcome."""

    def force_kill(self, reason: models.OutcomeKind) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def output_if_changed(self) -> tuple[str, int] | None:
        """For heartbeats: the output tail so far and its total bytes, None if unchanged."""

    @property
    def session_tag(self) -> str | None:
        """What a recovery sweep on this host needs to kill what is left of it."""


class Executor(Protocol):
    """Turns a claimed job into an attempt. Chosen by the composition root (the CLI) and
    passed to the Worker, which does not know what runs its jobs."""

    # True: `prepare` always returns the outcome (nothing runs), so the worker finishes the
    # job in its claim loop, without a thread of its own
    inline: bool

    def open(self, log: Any) -> None:
        """Before the first job (the worker is registered and has recovered its host)."""

    def close(self) -> None:
        """After the last job has ended."""

    def prepare(self, job: models.Job, policy: models.Policy) -> Attempt | models.Outcome:
        """The attempt, not started yet; or, when it must not or cannot run, its outcome."""


class ShellExecutor:
    """Each job is `/bin/sh -c COMMAND` in a session of its own (runner.Runner), checked
    against the allow-lists first, and watched by a lifeline process that kills it if the
    worker dies."""

    inline = False

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] = os.environ,
        lifeline: bool = True,
    ) -> None:
        self.pinned = settings.allowed_commands
        self.kill_grace_s = settings.kill_grace_s
        self.environ = dict(environ)
        self._want_lifeline = lifeline
        self._lifeline: Lifeline | None = None

    def open(self, log: Any) -> None:
        if not self._want_lifeline:
            return
        try:
            self._lifeline = Lifeline()  # this process's jobs die with it, however it dies
        except OSError as exc:  # recovery sweeps still find orphans on this host
            log.warning("lifeline_unavailable", error=str(exc))

    def close(self) -> None:
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def prepare(self, job: models.Job, policy: models.Policy) -> Attempt | models.Outcome:
        if refused := self.refusal(job.command, policy):
            note = f"[queuectl: {refused}; it was not run]\n"
            return models.Outcome(
                models.OutcomeKind.REFUSED, error=refused, output=note, output_bytes=len(note)
            )
        try:
            return Runner(
                job.command,
                env=job_env(job, self.environ),
                timeout_s=job.timeout_s,
                kill_grace_s=self.kill_grace_s,
                output_limit=policy.output_limit,
                lifeline=self._lifeline,
            )
        except OSError as exc:  # e.g. no file descriptor left for the output file
            return spawn_failure(f"could not capture output: {exc}")

    def refusal(self, command: str, policy: models.Policy) -> str | None:
        """Why allowed-commands forbids running `command`, or None. Checked right before the
        spawn: whoever can write the database can enqueue anything, so this is the guarantee,
        and this worker's own (pinned) list is one that the database cannot widen."""
        if not allowlist.allows(self.pinned, command):
            return f"{allowlist.REFUSED} (pinned on this worker)"
        if not allowlist.allows(policy.allowed_commands, command):
            return allowlist.REFUSED
        return None


class NoopExecutor:
    """Benchmarks: every job succeeds at once without running anything, so that claim,
    record and complete (the queue's own overhead) are measured apart from spawning a shell."""

    inline = True

    def open(self, log: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def prepare(self, job: models.Job, policy: models.Policy) -> Attempt | models.Outcome:
        return models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0)
