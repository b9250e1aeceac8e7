"""`python -m queuectl`: the entry point the e2e tests and containers use."""

from queuectl.cli.app import main

main()
