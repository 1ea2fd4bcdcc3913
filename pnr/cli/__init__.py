"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input."""

from __future__ import annotations

import codecs
import contextlib
import io
import sys

from pnr.cli.app import app
from pnr.cli.app import main as _app_main

__all__ = ["app", "main", "tolerant_console"]


def tolerant_console() -> None:
    """On a console whose encoding is not UTF-8 (a Windows code page, PYTHONIOENCODING=ascii), print what it
    cannot show as '?' instead of failing with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or stream.errors != "strict":
            continue
        with contextlib.suppress(LookupError):
            if codecs.lookup(stream.encoding).name == "utf-8":
                continue
        with contextlib.suppress(ValueError, OSError):
            stream.reconfigure(errors="replace")


def main() -> None:
    """The console script's entry point."""
    tolerant_console()
    _app_main()
