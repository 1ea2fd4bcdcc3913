"""What every command shares: the consoles, the options several commands take, errors as exit statuses, the
config's plan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pnr.exceptions import ConfigError, PnrError, exit_status_of

if TYPE_CHECKING:
    from pnr.model.plan import Plan

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="domain config (JSON)", show_default=False)]
RuntimeOpt = Annotated[
    Path | None, typer.Option("--runtime-dir", help="runtime folder [default: $PNR_RUNTIME_DIR or ./runtime]")
]
EnvFileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--env-file",
        help="read ${VAR} values from this file too (repeatable; after the domain's env_files, a later file wins; "
        "the environment wins over every file)",
        show_default=False,
    ),
]


def escape(text: str) -> str:
    """`text` shown as it is by rich (no markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def fail(exc: PnrError) -> typer.Exit:
    """The exit for a PnrError: its message, its exit status."""
    return fail_with(exit_status_of(exc), str(exc))


def fail_with(code: int, message: str) -> typer.Exit:
    """Bad input (2) is printed as is (file: path: problem); a failure (1) is labelled."""
    err.print(f"[bold red]failed:[/] {escape(message)}" if code == 1 else escape(message))
    return typer.Exit(code)


def read_plan(config: Path, env: bool = False, env_files: list[Path] | None = None) -> Plan:
    """The config's plan, or exit 2 naming every problem; `env`: also every ${VAR} it uses must resolve (in the
    environment, `env_files` and the domain's env_files)."""
    from pnr.model.plan import check_config, load_plan

    try:
        extra = [str(path) for path in env_files or ()]
        return check_config(str(config), env_files=extra) if env else load_plan(str(config))
    except ConfigError as exc:
        raise fail(exc) from None


def quiet_prefect(verbose: bool) -> None:
    """Offline-friendly, quiet Prefect defaults; anything the user set explicitly wins."""
    from pnr.settings import quiet_prefect_env

    for key, value in quiet_prefect_env(verbose).items():
        os.environ.setdefault(key, value)
