"""queuectl: run shell commands as background jobs on SQLite or PostgreSQL."""

__version__ = "0.1.0"
