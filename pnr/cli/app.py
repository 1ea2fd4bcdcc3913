"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input.

The commands live in modules by subject (`up`, `ops`, `compose_cmd`, `serve_cmd`, `doctor`, `server_cmd`); this
module is the typer app that names them, the commands on a config alone (validate, plan, schema) and the entry
point."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from pnr.cli import ops
from pnr.cli.common import ConfigArg, EnvFileOpt, err, escape, out, read_plan
from pnr.cli.compose_cmd import import_
from pnr.cli.doctor import doctor
from pnr.cli.serve_cmd import serve
from pnr.cli.server_cmd import server_app
from pnr.cli.up import up
from pnr.exceptions import PnrError, exit_status_of

app = typer.Typer(
    name="pnr",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Bring up Docker containers in order of real readiness, as Prefect flows.",
)
signal_app = typer.Typer(no_args_is_help=True, help="Read or set signals in the runtime folder.")
app.add_typer(signal_app, name="signal")
app.add_typer(server_app, name="server")
app.command()(doctor)


def _print_version(value: bool) -> None:
    """`pnr --version`: pnr's version and those of the libraries that decide its behaviour."""
    if not value:
        return
    import platform
    from importlib.metadata import version

    print(f"pnr {version('pnr')}")
    print(f"prefect {version('prefect')}\ndocker-py {version('docker')}\npython {platform.python_version()}")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print versions and exit")
    ] = False,
) -> None:
    pass


def validate(config: ConfigArg, env_file: EnvFileOpt = None) -> None:
    """Check a config, every ${VAR} of its env included; print "ok" or every problem with file and JSON path
    (exit 2)."""
    plan = read_plan(config, env=True, env_files=env_file)
    n = len(plan.chunks)
    out.print(f"ok: {config}: domain {plan.domain.name}, {n} chunk{'s' * (n != 1)} in {len(plan.domain.cpuxs)} cpux")
    for sig in plan.external:
        out.print(
            f"  external signal {sig}: nothing produces it; `pnr up` waits until it is set "
            f"(pnr signal set {config} {sig} --tv Y){plan.near_miss(sig)}"
        )


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    mermaid = "mermaid"


def plan(config: ConfigArg, format: Annotated[PlanFormat, typer.Option("--format", "-f")] = PlanFormat.text) -> None:
    """Show the signal graph: producers, consumers, levels (start order), external signals."""
    p = read_plan(config)
    text = {PlanFormat.text: p.render_text, PlanFormat.json: p.render_json, PlanFormat.mermaid: p.render_mermaid}[
        format
    ]()
    print(text)


def schema() -> None:
    """Print the JSON Schema of a domain config."""
    from pnr.model import domain_json_schema

    print(json.dumps(domain_json_schema(), indent=2))


app.command()(validate)
app.command()(plan)
app.command()(schema)
app.command()(up)
app.command()(ops.status)
app.command("ps", help="Short for `pnr status`: chunk states, containers, truth values.")(ops.status)
app.command()(ops.logs)
app.command()(ops.restart)
app.command()(ops.down)
app.command()(serve)
app.command("import")(import_)
signal_app.command("set")(ops.signal_set)
signal_app.command("get")(ops.signal_get)


def _run_app(argv: list[str]) -> None:
    """Run the command line `argv`; a plain `pnr up` line calls `up` without typer's value adapters (see
    pnr.cli.fast), handling what it raises as typer's standalone mode does (typer.core._main)."""
    kwargs = _plain_up_kwargs(argv)
    if kwargs is None:
        app()
        return
    try:
        up(**kwargs)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # typer.BadParameter and the like, raised by `up` itself
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]  # typer's ClickException is its only subclass
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        sys.exit(130)
    except (EOFError, typer.Abort):
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)


def _plain_up_kwargs(argv: list[str]) -> dict[str, Any] | None:
    """`up`'s keyword arguments when `argv` is a `pnr up` line its own parser reads plainly, else None."""
    if not argv or argv[0] != "up":
        return None
    from pnr.cli.fast import plain_kwargs

    return plain_kwargs(_up_command(), argv[1:])


def _up_command() -> Any:
    """The click command typer makes of `up`, built alone: the whole app's take ~10 times longer (~30 ms)."""
    import typer.main

    for info in app.registered_commands:
        if info.callback is up and info.name is None:
            try:
                return typer.main.get_command_from_info(
                    info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
                )
            except (AttributeError, TypeError):  # typer's internals moved: the whole app's command, as typer makes it
                break
    return typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]


def main() -> None:
    """Run the command line, then exit at once (see `_exit_now`)."""
    code: int | str | None = 0
    try:
        _run_app(sys.argv[1:])
    except PnrError as exc:  # anything not handled by a command
        err.print(escape(str(exc)))
        code = exit_status_of(exc)
    except SystemExit as exc:
        code = exc.code
    _exit_now(code)


def _exit_now(code: int | str | None) -> NoReturn:
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
