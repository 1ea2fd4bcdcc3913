"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input.

The commands live in modules by subject (`up`, `ops`, `compose_cmd`, `serve_cmd`, `doctor`, `server_cmd`); this
module is the typer app that names them and declares `pnr up`'s options, with the commands on a config alone
(validate, plan, schema). The entry point is pnr.cli.main; a plain `pnr up` line does not come here."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from pnr.cli import ops
from pnr.cli.common import out, read_plan
from pnr.cli.compose_cmd import import_
from pnr.cli.doctor import doctor
from pnr.cli.options import (
    BuildOpt,
    ConfigArg,
    CpuxOpt,
    DryRunOpt,
    EnvFileOpt,
    EphemeralOpt,
    RecreateOpt,
    RuntimeOpt,
    TimelineOpt,
    TimeoutOpt,
    VerboseOpt,
    WatchOpt,
    WatchSecondsOpt,
)
from pnr.cli.serve_cmd import serve
from pnr.cli.server_cmd import server_app
from pnr.cli.up import up as bring_up

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


@app.command()
def up(
    config: ConfigArg,
    cpux: CpuxOpt = None,
    runtime_dir: RuntimeOpt = None,
    env_file: EnvFileOpt = None,
    timeout: TimeoutOpt = None,
    build: BuildOpt = False,
    force_recreate: RecreateOpt = False,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = False,
    watch: WatchOpt = False,
    watch_seconds: WatchSecondsOpt = None,
    ephemeral_server: EphemeralOpt = False,
    timeline: TimelineOpt = None,
) -> None:
    """Bring the domain up as a Prefect flow; chunks start as their gates open. Exit 0 when all completed
    (with --watch: when the watch ends cleanly, on Ctrl-C or after --watch-seconds)."""
    bring_up(**locals())  # the same parameters by name (tests/unit/test_cli_fast_path.py keeps them one list)


app.command()(ops.status)
app.command("ps", help="Short for `pnr status`: chunk states, containers, truth values.")(ops.status)
app.command()(ops.logs)
app.command()(ops.restart)
app.command()(ops.down)
app.command()(serve)
app.command("import")(import_)
signal_app.command("set")(ops.signal_set)
signal_app.command("get")(ops.signal_get)
