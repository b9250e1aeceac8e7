"""Per-invocation state: the global flags, the settings, and the lazily opened backend."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from queuectl import config

if TYPE_CHECKING:
    from queuectl.backends.base import Backend


class Context:
    # a plain class: every CLI call builds one, and a dataclass costs ~1 ms to define
    def __init__(self) -> None:
        self.flags: dict[str, object] = {}
        self.debug = False
        self._settings: config.Settings | None = None
        self._backend: Backend | None = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load_settings(self.flags)
        return self._settings

    def backend(self, *, pool_size: int = 0) -> Backend:
        if self._backend is None:
            from queuectl.backends import open_backend

            url = self.settings.database_url
            # only the default location is created on first use; a directory in a URL the
            # user gave must exist
            default = url == config.default_db_url(os.environ)
            self._backend = open_backend(url, pool_size=pool_size, create_dir=default)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


CTX = Context()
