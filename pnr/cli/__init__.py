"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input.

A plain `pnr up` line goes straight to `pnr.cli.up.up` (read by pnr.cli.fast); every other line goes through the
typer app (pnr.cli.app), imported then."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys
from typing import NoReturn

from pnr.cli.common import err, escape
from pnr.exceptions import PnrError, exit_status_of

__all__ = ["exit_now", "main", "run_line", "tolerant_console"]


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
    """The console script's entry point: run the command line, then exit at once (see `exit_now`)."""
    tolerant_console()
    code: int | str | None = 0
    try:
        run_line(sys.argv[1:])
    except PnrError as exc:  # anything not handled by a command
        err.print(escape(str(exc)))
        code = exit_status_of(exc)
    except SystemExit as exc:
        code = exc.code
    exit_now(code)


def run_line(argv: list[str]) -> None:
    """Run the command line `argv`, ending as typer's standalone mode ends (SystemExit with the exit status)."""
    from pnr.cli.fast import plain_up_kwargs

    kwargs = plain_up_kwargs(argv[1:]) if argv[:1] == ["up"] else None
    if kwargs is None:
        from pnr.cli.app import app

        app(args=argv)
        return
    from pnr.cli.up import up

    try:
        up(**kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except EOFError:
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        _end_as_typer(exc)
        raise


def _end_as_typer(exc: Exception) -> None:
    """Exit as typer would for `exc` when it is one of typer's (`up` raises typer's Exit to end with a status,
    importing typer then); return otherwise."""
    typer = sys.modules.get("typer")
    if typer is None:
        return  # typer is not even imported: not one of its exceptions
    if isinstance(exc, typer.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, typer.Abort):
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)
    if isinstance(exc, typer.TyperException):  # typer.BadParameter and the like
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
        sys.exit(getattr(exc, "exit_code", 1))


def exit_now(code: int | str | None) -> NoReturn:
    """Exit without Python's interpreter teardown, which after a flow ran in this process can take seconds (no
    Python code runs then). The exit handlers run first (Prefect flushes its events and logs there) and the
    output is flushed, so nothing is lost; `code` as `sys.exit` takes it (a string is printed, exit 1)."""
    import atexit

    if isinstance(code, str):
        err.print(code)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code or 0)
