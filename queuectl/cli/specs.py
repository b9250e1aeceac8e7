"""Moved to queuectl/specs.py (domain rules, below the CLI); `worker start` still imports
check_queue from here."""

from queuectl.specs import check_queue as check_queue
