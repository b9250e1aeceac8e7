"""Per-invocation state: the global flags, the settings, and the lazily opened Client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from queuectl import config

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.client import Client


class Context:
    # a plain class: every CLI call builds one, and a dataclass costs ~1 ms to define
    def __init__(self) -> None:
        self.flags: dict[str, object] = {}
        self.debug = False
        self._settings: config.Settings | None = None
        self._client: Client | None = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load_settings(self.flags)
        return self._settings

    def client(self, *, pool_size: int = 0) -> Client:
        """The Client every command goes through, opened on first use (a command that
        rejects its arguments never connects)."""
        if self._client is None:
            from queuectl.client import Client

            self._client = Client(settings=self.settings, pool_size=pool_size)
        return self._client

    def backend(self, *, pool_size: int = 0) -> Backend:
        """The Client's storage, for the commands that compose workers and orchestrators."""
        return self.client(pool_size=pool_size).backend

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


CTX = Context()
