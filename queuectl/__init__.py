"""queuectl: run shell commands as background jobs on SQLite or PostgreSQL.

`from queuectl import Client` is the Python API (queuectl/client.py)."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from queuectl.client import Client as Client


def __getattr__(name: str) -> Any:
    # built on first use (PEP 562): `python -m queuectl` imports this package on every call,
    # and most calls never touch the Client
    if name == "Client":
        from queuectl.client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
