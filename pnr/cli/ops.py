"""The commands on a domain that is (or was) up: status, logs, restart, down, and its signals."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pnr.cli.common import err, escape, fail, fail_with, out, plural, read_plan
from pnr.cli.options import ConfigArg, RuntimeOpt
from pnr.cli.view import Progress, chunk_table, on_ctrl_c
from pnr.exceptions import ConfigError, PnrError

if TYPE_CHECKING:
    from pnr.cli.render import LogPrinter
    from pnr.lifecycle.logs import LogFollower
    from pnr.lifecycle.restart import RestartResult


def status(
    config: ConfigArg,
    runtime_dir: RuntimeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Truth values, chunk states and containers of a domain."""
    plan = read_plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle.status import domain_status
    from pnr.settings import resolve_runtime_dir

    data = domain_status(plan, Engine(), resolve_runtime_dir(runtime_dir))  # and the config's engines
    for name, engine in data.engines.items():
        if not engine.reachable:
            where = "" if len(data.engines) == 1 else f" for the chunks on engine {name}"
            err.print(f"[yellow]warning:[/] {escape(engine.error or name)}; showing runtime files only{where}")
    if as_json:
        print(json.dumps(data.to_json(), indent=2))
        return
    chunk_table(data, bool(plan.domain.engines))
    stale = data.stale
    rows = []
    for name, s in sorted(data.signals.items()):
        note = [f"[yellow]may be stale: {escape(stale[name])}[/]" if name in stale else ""] if stale else []
        rows.append((name, s.tv, ", ".join(s.response), s.prompt, *note))
    out.table("signals", ("signal", "tv", "response", "prompt", *(["note"] if stale else [])), rows)
    for file, problem in data.problems.items():
        err.print(f"[yellow]warning:[/] runtime file {file} ignored: {escape(problem)}")


def logs(
    config: ConfigArg,
    chunks: Annotated[
        list[str] | None, typer.Argument(help="chunks to show [default: every chunk]", show_default=False)
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow new output until Ctrl-C")] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", help="only the last N lines of each container", min=0)
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="show the engine's timestamps")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="no colours, even on a terminal")] = False,
) -> None:
    """The output of the domain's containers (only those pnr labelled for it), `chunk | line` like compose;
    lines of several containers are merged in time order. -f follows them live (Ctrl-C ends, exit 0)."""
    plan = read_plan(config)
    from pnr.cli.render import LogPrinter
    from pnr.engines.engine import Engine
    from pnr.lifecycle.logs import LogFollower, log_sources, read_logs

    try:
        sources, missing = log_sources(plan, Engine(), chunks or [])
    except PnrError as exc:
        raise fail(exc) from None
    for name in missing:
        err.print(f"[yellow]note:[/] {name} has no container (not up; `pnr up {config}`)")
    colour = out.is_terminal and not no_color and not os.environ.get("NO_COLOR")
    printer = LogPrinter([s.chunk for s in sources], colour=colour)
    try:
        if not follow:
            try:
                lines = read_logs(sources, tail=tail, timestamps=timestamps)
            except PnrError as exc:
                raise fail(exc) from None
            sys.stdout.writelines(printer.format(ln.chunk, ln.text, ln.stamp) for ln in lines)
            sys.stdout.flush()
            return
        _follow_logs(LogFollower(sources, tail=tail, timestamps=timestamps), printer)
    except BrokenPipeError:  # `pnr logs ... | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _follow_logs(follower: LogFollower, printer: LogPrinter) -> None:
    """Print the followed lines until Ctrl-C or until every container ended."""
    import signal

    from pnr.lifecycle.logs import FollowEnded

    # Ctrl-C ends following even when this process was started with SIGINT ignored (Python then installs no
    # handler of its own: a `pnr logs -f` started from such a parent ignored Ctrl-C and ran on; `pnr up` sets its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    follower.start()
    try:
        for item in follower.lines():
            if isinstance(item, FollowEnded):
                if item.error:
                    err.print(f"[yellow]warning:[/] {item.chunk}: {escape(item.error)}")
                continue
            sys.stdout.write(printer.format(item.chunk, item.text, item.stamp))
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C ends following: a normal end
        pass
    finally:
        follower.stop()


def restart(
    config: ConfigArg,
    chunk: Annotated[str, typer.Argument(help="the chunk whose container to restart", show_default=False)],
    runtime_dir: RuntimeOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="seconds to wait for every chunk to be ready again [default: $PNR_TIMEOUT_SECONDS or 300]", min=0.1
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show every watch step")] = False,
) -> None:
    """Restart one chunk's container: its signals go N, it stops (its stop signal and grace period) and starts,
    and is probed until ready; its dependents follow their on_dependency_lost policy. Exit 0 when every chunk
    that was ready is ready again. With a `pnr up --watch` of the domain running, only restarts the container."""
    plan = read_plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle import RunControl, RunNote
    from pnr.lifecycle.restart import restart_chunk
    from pnr.settings import get_settings, resolve_runtime_dir

    rdir = resolve_runtime_dir(runtime_dir)
    progress = Progress()
    control = RunControl()
    control.listen(lambda event: None if isinstance(event, RunNote) else progress(event))
    interrupted = on_ctrl_c(control.interrupt)
    out.print(f"pnr restart [bold]{plan.domain.name}[/] {escape(chunk)}; runtime {rdir}")
    log = (lambda m: progress.line(escape(m))) if verbose else None
    try:
        result = restart_chunk(
            plan,
            Engine(),
            rdir,
            chunk,
            timeout_seconds=timeout or get_settings().timeout_seconds,
            config_path=str(config),
            control=control,
            log=log,
        )
    except PnrError as exc:
        raise fail(exc) from None
    _restarted(result, plan.domain.name, chunk, bool(interrupted))


def _restarted(result: RestartResult, domain: str, chunk: str, interrupted: bool) -> None:
    """How a restart ended: only the container (a live run watches it), or every chunk ready again."""
    if result.mode == "live-run":
        out.print(
            f"a pnr run of domain {domain} is live (pid {result.live_pid}, e.g. `pnr up --watch`): "
            f"restarted container {result.container} only; that run's watch reacts to it"
        )
        if not result.ok:
            raise fail_with(1, result.message)
        out.print(f"[green]restarted:[/] {chunk}; the live run reports every chunk ready again ({result.seconds:.1f}s)")
        return
    if result.not_watched:
        out.print(f"not watched (they were not ready before): {', '.join(result.not_watched)}")
    if not result.ok:
        if interrupted:
            err.print("[yellow]interrupted.[/] The containers are left as they are; `pnr status` shows them.")
            raise typer.Exit(130)
        raise fail_with(1, result.message)
    out.print(
        f"[green]restarted:[/] {chunk} ({result.container}); {plural(len(result.watched), 'chunk')} ready again "
        f"in {result.seconds:.1f}s"
    )


def down(
    config: ConfigArg,
    runtime_dir: RuntimeOpt = None,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="also remove named volumes pnr created")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-t",
            min=0,
            help="seconds each container gets after its stop signal before SIGKILL, instead of its "
            "stop_grace_period_seconds (0: kill at once)",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="remove the domain even if another config file (with the same domain name) brought it up"
        ),
    ] = False,
) -> None:
    """Remove exactly what pnr created for this domain (labels), in reverse order."""
    plan = read_plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle.ops import tear_down_domain
    from pnr.settings import resolve_runtime_dir

    def removed(kind: str, name: str) -> None:  # as each goes: a large domain takes a while
        out.print(f"  removed {kind} {name}")

    try:
        report = tear_down_domain(
            plan,
            Engine(),
            resolve_runtime_dir(runtime_dir),
            volumes=volumes,
            on_removed=removed,
            stop_timeout=timeout,
            force=force,
        )
    except PnrError as exc:
        raise fail(exc) from None
    out.print(
        f"down: {plan.domain.name}: {len(report['containers'])} container(s), "
        f"{len(report['networks'])} network(s) removed"
    )


def signal_set(
    config: ConfigArg,
    name: Annotated[str, typer.Argument(help="signal name")],
    tv: Annotated[str, typer.Option("--tv", help="Y, N or U (any case)")],
    response: Annotated[list[str] | None, typer.Option("--response", help="response word (repeatable)")] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt text")] = None,
    runtime_dir: RuntimeOpt = None,
) -> None:
    """Set a signal (written to external.json in the runtime folder): opens gates of a waiting run."""
    plan = read_plan(config)
    from pnr.exceptions import ConfigIssue
    from pnr.model import check_signal_name
    from pnr.runtime import make_pnr, set_external_signal
    from pnr.settings import resolve_runtime_dir

    try:
        try:
            check_signal_name(name)
        except ValueError as exc:
            raise ConfigError("signal", [ConfigIssue("", str(exc))]) from None
        value = make_pnr(name, tv, response, prompt)
    except ConfigError as exc:
        raise fail(exc) from None
    rdir = resolve_runtime_dir(runtime_dir)
    path = set_external_signal(rdir, name, value)
    note = "" if name in plan.consumers else " (no chunk of this domain waits on it)"
    out.print(f"{name} = {value.tv} in {path}{note}")


def signal_get(
    config: ConfigArg,
    name: Annotated[str | None, typer.Argument(help="signal name (all if omitted)")] = None,
    runtime_dir: RuntimeOpt = None,
) -> None:
    """Print current signal values as JSON."""
    plan = read_plan(config)
    from pnr.runtime.store import UNKNOWN, read_state
    from pnr.settings import resolve_runtime_dir

    state, _problems = read_state(resolve_runtime_dir(runtime_dir), plan.domain.name)
    if name is not None:
        print(json.dumps(state.get(name, UNKNOWN).model_dump()))
    else:
        print(json.dumps({k: v.model_dump() for k, v in sorted(state.items())}, indent=2))
