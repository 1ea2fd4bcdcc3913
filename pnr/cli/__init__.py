"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input."""

from pnr.cli.app import app, main

__all__ = ["app", "main"]
