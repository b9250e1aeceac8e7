"""The exception tree, and the exit code the CLI gives each branch.

* QueuectlError              exit 1
  + UsageError               exit 2  bad JSON, missing field, bad value, unknown key or state
    - ConfigError            exit 2  bad setting (names the key and where it came from)
  + BackendError             exit 1
    - BackendUnavailable     exit 69 cannot connect, or locked past the busy timeout
    - SchemaMissing          exit 1  tables absent or too old: run `queuectl db migrate`
    - SchemaTooNew           exit 69 migrated by a newer queuectl: this one must not touch it
  + NotFound                 exit 3
    - JobNotFound            exit 3
  + InvalidTransition        exit 4  e.g. retrying a pending job
    - DuplicateJob           exit 4  an id that already exists
    - DuplicateSchedule      exit 4  a schedule name that already exists
  + WaitTimeout              exit 124 Client.wait: a job was still unfinished at the deadline
"""


class QueuectlError(Exception):
    """Base of every error the CLI turns into one line on stderr."""

    exit_code = 1


class UsageError(QueuectlError):
    exit_code = 2


class ConfigError(UsageError):
    pass


class BackendError(QueuectlError):
    pass


class BackendUnavailable(BackendError):
    exit_code = 69


class SchemaMissing(BackendError):
    pass


class SchemaTooNew(BackendError):
    exit_code = 69


class NotFound(QueuectlError):
    exit_code = 3


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class InvalidTransition(QueuectlError):
    exit_code = 4


class DuplicateJob(InvalidTransition):
    pass


class DuplicateSchedule(InvalidTransition):
    pass


class WaitTimeout(QueuectlError):
    """Raised by Client.wait when its timeout passes first; `unfinished` holds the ids not
    yet completed, dead or cancelled."""

    exit_code = 124  # what `timeout(1)` exits with

    def __init__(self, message: str, *, unfinished: list[str]) -> None:
        super().__init__(message)
        self.unfinished = unfinished
