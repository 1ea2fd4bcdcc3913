"""What every command shares: the consoles, errors as exit statuses, the config's plan. Nothing here imports
typer or rich (a plain `pnr up` line is run without either; see pnr.cli.console and pnr.cli.fast); the options
several commands take are in pnr.cli.options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pnr.cli.console import Console, escape
from pnr.exceptions import ConfigError, PnrError, exit_status_of

if TYPE_CHECKING:
    import typer

    from pnr.model.plan import Plan

__all__ = ["err", "escape", "exit_with", "fail", "fail_with", "out", "plural", "quiet_prefect", "read_plan"]

out = Console()
err = Console(stderr=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def fail(exc: PnrError) -> typer.Exit:
    """The exit for a PnrError: its message, its exit status."""
    return fail_with(exit_status_of(exc), str(exc))


def fail_with(code: int, message: str) -> typer.Exit:
    """Bad input (2) is printed as is (file: path: problem); a failure (1) is labelled."""
    err.print(f"[bold red]failed:[/] {escape(message)}" if code == 1 else escape(message))
    return exit_with(code)


def exit_with(code: int) -> typer.Exit:
    """The exit with status `code` that typer's commands raise (typer is imported here, on the way out: a
    `pnr up` that ends well never imports it)."""
    import typer

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
