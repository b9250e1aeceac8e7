"""Schedule operations shared by the CLI and the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from queuectl import errors, models
from queuectl.cron import Cron

if TYPE_CHECKING:
    from queuectl.backends.base import Backend


def resume_schedule(backend: Backend, name: str) -> models.Schedule:
    """Unpause; the slots that passed while paused count as done, so no backlog fires."""
    current = {s.name: s for s in backend.list_schedules()}.get(name)
    if current is None:
        raise errors.NotFound(f"no schedule named {name!r}")
    skip_to = Cron.parse(current.cron, current.tz).latest_at_or_before(models.utcnow())
    return backend.pause_schedule(name, paused=False, skip_to=skip_to)
