"""The `pnr` command: parses, calls into pnr, renders. Exit status: 0 ok, 1 run failed, 2 bad input."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pnr.cli.doctor import doctor
from pnr.cli.server_cmd import server_app
from pnr.exceptions import ConfigError, PnrError, exit_status_of

if TYPE_CHECKING:
    from pnr.backend.protocol import Accepted, UpOutcome
    from pnr.records import DomainStatus, RunEvent

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

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


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

PHASE_STYLE = {
    "waiting": "yellow",
    "starting": "cyan",
    "probing": "blue",
    "ready": "green",
    "failed": "red",
    "blocked": "red",
    "lost": "red",
}


def _quiet_prefect(verbose: bool) -> None:
    """Offline-friendly, quiet Prefect defaults; anything the user set explicitly wins."""
    from pnr.settings import quiet_prefect_env

    for key, value in quiet_prefect_env(verbose).items():
        os.environ.setdefault(key, value)


def _fail(exc: PnrError) -> typer.Exit:
    return _fail_with(exit_status_of(exc), str(exc))


def _fail_with(code: int, message: str) -> typer.Exit:
    """Bad input (2) is printed as is (file: path: problem); a failure (1) is labelled."""
    err.print(f"[bold red]failed:[/] {_escape(message)}" if code == 1 else _escape(message))
    return typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _plan(config: Path, env: bool = False, env_files: list[Path] | None = None) -> Any:
    """The config's plan, or exit 2 naming every problem; `env`: also every ${VAR} it uses must resolve (in the
    environment, `env_files` and the domain's env_files)."""
    from pnr.model.plan import check_config, load_plan

    try:
        extra = [str(path) for path in env_files or ()]
        return check_config(str(config), env_files=extra) if env else load_plan(str(config))
    except ConfigError as exc:
        raise _fail(exc) from None


@app.command()
def validate(config: ConfigArg, env_file: EnvFileOpt = None) -> None:
    """Check a config, every ${VAR} of its env included; print "ok" or every problem with file and JSON path
    (exit 2)."""
    plan = _plan(config, env=True, env_files=env_file)
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


@app.command()
def plan(config: ConfigArg, format: Annotated[PlanFormat, typer.Option("--format", "-f")] = PlanFormat.text) -> None:
    """Show the signal graph: producers, consumers, levels (start order), external signals."""
    p = _plan(config)
    text = {PlanFormat.text: p.render_text, PlanFormat.json: p.render_json, PlanFormat.mermaid: p.render_mermaid}[
        format
    ]()
    print(text)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a domain config."""
    from pnr.model import domain_json_schema

    print(json.dumps(domain_json_schema(), indent=2))


class _Progress:
    """Renders chunk phase changes as lines a person can follow."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.last: dict[str, tuple[str, str]] = {}

    def __call__(self, event: RunEvent) -> None:
        from pnr.records import RunNote

        if isinstance(event, RunNote):  # watch started / ended (the outcome note is the caller's)
            if event.what.startswith("watch."):
                out.print(f"  {time.monotonic() - self.t0:7.2f}s  [bold]{_escape(event.message)}[/]")
            return
        if self.last.get(event.chunk) == (event.phase, event.detail):
            return
        self.last[event.chunk] = (event.phase, event.detail)
        style = PHASE_STYLE.get(event.phase, "white")
        first = event.detail.splitlines()[0] if event.detail else ""
        out.print(
            f"  {time.monotonic() - self.t0:7.2f}s  {event.chunk:<22} [{style}]{event.phase:<9}[/] {_escape(first)}"
        )


class _Header:
    """The `pnr up DOMAIN (N chunks, cpux ...)` line: from the config read here, or from what the runner
    accepted (the client of a running runner never loads the config itself)."""

    def __init__(self, rdir: Path) -> None:
        self.rdir = rdir
        self.domain: str | None = None
        self.engines = False
        self.shown = False

    def show(self, domain: str, n: int, cpuxs: list[str], engines: bool = False) -> None:
        self.domain, self.engines, self.shown = domain, engines, True
        out.print(f"pnr up [bold]{domain}[/] ({n} chunk{'s' * (n != 1)}, cpux {', '.join(cpuxs)}); runtime {self.rdir}")

    def accepted(self, event: Accepted) -> None:
        if not self.shown:  # else shown from the config read here, with the same facts
            self.show(event.domain, event.chunks, event.cpuxs, event.engines)


@app.command()
def up(
    config: ConfigArg,
    cpux: Annotated[str | None, typer.Option(help="bring up only this cpux")] = None,
    runtime_dir: RuntimeOpt = None,
    env_file: EnvFileOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="seconds before giving up (bounds waiting on external signals) [default: $PNR_TIMEOUT_SECONDS or 300]",
            min=0.1,
        ),
    ] = None,
    build: Annotated[bool, typer.Option("--build", help="rebuild images that have a build_path")] = False,
    force_recreate: Annotated[
        bool, typer.Option("--force-recreate", help="recreate containers even if unchanged")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be created, reused or recreated, and why; touch nothing")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="show Prefect's own logs of a run in this process (a run on pnr's resident runner logs to the UI "
            "and `pnr server logs`)",
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="after bring-up, keep probing; regressions flip signals and "
            "dependents follow on_dependency_lost; Ctrl-C ends the watch",
        ),
    ] = False,
    watch_seconds: Annotated[
        float | None, typer.Option("--watch-seconds", help="end the watch after this long", min=0.1)
    ] = None,
    ephemeral_server: Annotated[
        bool,
        typer.Option(
            "--ephemeral-server",
            help="use a throw-away Prefect server for this run instead of pnr's resident one "
            "[default: $PNR_EPHEMERAL_SERVER]",
        ),
    ] = False,
    timeline: Annotated[
        Path | None,
        typer.Option(
            "--timeline",
            help="write the run's readiness timeline as a picture: FILE.svg, or FILE.png (needs chromium)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Bring the domain up as a Prefect flow; chunks start as their gates open. Exit 0 when all completed
    (with --watch: when the watch ends cleanly, on Ctrl-C or after --watch-seconds)."""
    if dry_run:
        _dry_run(_plan(config), config, runtime_dir, force_recreate)
        return
    chromium = _timeline_target(timeline)
    _quiet_prefect(verbose)
    from pnr.settings import resolve_runtime_dir

    rdir = resolve_runtime_dir(runtime_dir)
    header = _Header(rdir)
    # pnr's runner already up: it checks the config (exit 2 before any flow run) and the run starts at once;
    # this process then never loads the config models. Else check here first: a bad config starts no server.
    backend = _backend(ephemeral_server, start=False)
    plan = None
    if backend is None or not backend.use_runner:
        plan = _plan(config, env=True, env_files=env_file)
        try:
            plan.cpuxs_to_run(cpux, str(config))
        except ConfigError as exc:
            raise _fail(exc) from None
        header.show(plan.domain.name, len(plan.chunks), plan.cpux_order, bool(plan.domain.engines))
        backend = backend or _backend(ephemeral_server)
    from pnr.backend.protocol import UpRequest
    from pnr.backend.run import run_up

    remote = backend.use_runner  # the runner has another working directory: absolute paths
    request = UpRequest(
        config_path=str(config.resolve() if remote else config),
        cpux=cpux,
        runtime_dir=str(rdir.resolve() if remote else rdir),
        timeout_seconds=timeout,
        build=build,
        force_recreate=force_recreate,
        watch=watch,
        watch_seconds=watch_seconds,
        env_files=[str(path.resolve()) for path in env_file] if env_file else None,
    )
    progress = _Progress()
    outcome = run_up(request, backend, progress, header.accepted, _on_ctrl_c, shown_as=str(config))
    if outcome.exit_status == 2 and not header.shown:  # the runner found the config bad: nothing ran
        raise _fail_with(2, outcome.message)
    if outcome.summary is not None and header.domain is not None:
        _table(header.domain, header.engines, outcome.summary)
    else:  # a failed run: read the table here (the engine and runtime files)
        plan = plan or _plan(config)
        _summary(plan, rdir, ask_engines=outcome.error != "EngineUnreachable")
    if timeline is not None:
        _write_timeline(plan or _plan(config), rdir, outcome, timeline, chromium)
    _report(backend, outcome, config, watch, progress.t0)


def _report(backend: Any, outcome: UpOutcome, config: Path, watch: bool, t0: float) -> None:
    """The run's last lines: its flow run in the UI, then how it ended (exit status as the outcome says)."""
    url = backend.flow_run_url(outcome.flow_run_id)
    if url:
        out.print(f"flow run: {url}")
    if not outcome.ok:
        if outcome.interrupted:
            err.print(
                f"[yellow]interrupted.[/] Containers already started are left running (see the table above); "
                f"remove them with `pnr down {config}`, or run `pnr up {config}` again to continue."
            )
            raise typer.Exit(130)
        raise _fail_with(outcome.exit_status, outcome.message)
    result = outcome.result or {}
    n = sum(len(v) for v in result.get("cpuxs", {}).values())
    if watch:  # the watch ended cleanly (Ctrl-C, cancellation, --watch-seconds): the domain stays up
        out.print(f"[green]up:[/] {n} chunk{'s' * (n != 1)}; watched until: {_escape(result['watch']['ended'])}")
        return
    out.print(f"[green]up:[/] {n} chunk{'s' * (n != 1)} completed in {time.monotonic() - t0:.1f}s")


def _timeline_target(path: Path | None) -> str | None:
    """Check `--timeline FILE` before anything runs (exit 2): .svg, or .png with chromium to render it."""
    if path is None:
        return None
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise _fail_with(2, f"--timeline {path}: the file must end in .svg or .png")
    if not path.resolve().parent.is_dir():
        raise _fail_with(2, f"--timeline {path}: folder {path.resolve().parent} does not exist")
    if suffix == ".svg":
        return None
    from pnr.cli.render import find_chromium

    chromium = find_chromium()
    if chromium is None:
        raise _fail_with(
            2,
            f"--timeline {path}: a PNG is rendered with headless Chromium, which is not installed "
            "(Debian: apt-get install chromium); write FILE.svg instead (any browser shows it)",
        )
    return chromium


def _write_timeline(plan: Any, rdir: Path, outcome: UpOutcome, path: Path, chromium: str | None) -> None:
    """The run's Gantt chart: from its result, or for a run that failed from the chunk-state file it left."""
    from pnr.lifecycle.timeline import timeline_svg
    from pnr.runtime import ChunkStateFile

    if outcome.ok and outcome.result is not None:
        data = {n: c for chunks in outcome.result["cpuxs"].values() for n, c in chunks.items()}
        end = None
    else:
        data, end = ChunkStateFile(rdir, plan.domain.name).chunks(), time.time()
    svg = timeline_svg(data, plan.depends_on, title=f"readiness timeline of {plan.domain.name}", end=end)
    try:
        if chromium is None:
            path.write_text(svg, encoding="utf-8")
        else:
            from pnr.cli.render import svg_to_png

            svg_to_png(svg, path, chromium)
    except (OSError, RuntimeError) as exc:
        err.print(f"[yellow]warning:[/] timeline not written: {_escape(str(exc))}")
        return
    out.print(f"timeline: {path}")


def _backend(ephemeral: bool, start: bool = True) -> Any:
    """Where the run goes (see pnr.backend.choose); says so once when pnr's server had to be started.
    `start=False`: None instead of starting pnr's server or runner."""
    from pnr.backend.choose import choose_backend

    try:
        backend = choose_backend(ephemeral, start=start)
    except PnrError as exc:
        raise _fail(exc) from None
    if backend is not None and backend.started_now:
        out.print(
            f"started pnr's Prefect server in the background: UI {backend.ui_url} "
            "(it stays up for the next commands; `pnr server stop` stops it)"
        )
    return backend


def _dry_run(plan: Any, config: Path, runtime_dir: Path | None, force: bool) -> None:
    from pnr.engines.engine import Engine
    from pnr.lifecycle.ops import plan_actions
    from pnr.settings import resolve_runtime_dir

    try:
        rows = plan_actions(plan, Engine(), str(config), resolve_runtime_dir(runtime_dir), force=force)
    except PnrError as exc:
        raise _fail(exc) from None
    table = Table(title=f"pnr up --dry-run {plan.domain.name} (nothing was touched)", title_justify="left")
    for col in ("chunk", "container", "action", "why"):
        table.add_column(col)
    style = {"create": "cyan", "reuse": "green", "recreate": "yellow", "refuse": "red"}
    for row in rows:
        table.add_row(
            row["chunk"],
            row["container"],
            f"[{style[row['action']]}]{row['action']}[/]",
            _escape("; ".join(row["reasons"])),
        )
    if out.is_terminal:
        out.print(table)
    else:  # piped: one unwrapped line per chunk, so reasons stay whole for grep and scripts
        out.print(f"pnr up --dry-run {plan.domain.name} (nothing was touched)")
        for row in rows:
            out.print(
                f"  {row['chunk']:<22} {row['container']:<28} {row['action']:<9} "
                f"{_escape('; '.join(row['reasons']))}".rstrip()
            )
    if any(row["action"] == "refuse" for row in rows):
        raise typer.Exit(1)


def _on_ctrl_c(interrupt: Any) -> list[bool]:
    """First Ctrl-C: stop the runs cleanly (they end Failed, state recorded). Second: stop at once."""
    import signal

    flag: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if flag or not interrupt():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.append(True)
        err.print("[yellow]Ctrl-C: stopping (press again to stop at once) ...[/]")

    signal.signal(signal.SIGINT, handler)
    return flag


def _summary(plan: Any, rdir: Path, ask_engines: bool = True) -> None:
    """The chunk table, read here (the engine and runtime files; only the files after an engine was lost: it
    would make the user wait for another ping)."""
    from pnr.engines.engine import Engine
    from pnr.lifecycle.status import domain_status

    try:
        status = domain_status(plan, Engine() if ask_engines else None, rdir)
    except PnrError:
        return
    _table(plan.domain.name, bool(plan.domain.engines), status)


def _table(domain: str, engines: bool, status: DomainStatus) -> None:
    """The chunk table of `status` (`domain_status`); `engines`: the domain names engines, so say which one
    each chunk runs on."""
    table = Table(title=f"domain {domain}", title_justify="left")
    for col in ("chunk", "status", *(["engine"] if engines else []), "container", "detail"):
        table.add_column(col)
    for name, c in status.chunks.items():
        style = {"completed": "green", "failed": "red", "stopped": "red"}.get(c.status, "yellow")
        table.add_row(
            name,
            f"[{style}]{c.status}[/]",
            *([c.engine] if engines else []),
            c.container or "-",
            _escape(c.detail.splitlines()[0] if c.detail else ""),
        )
    out.print(table)


@app.command()
def status(
    config: ConfigArg,
    runtime_dir: RuntimeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Truth values, chunk states and containers of a domain."""
    plan = _plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle.status import domain_status
    from pnr.settings import resolve_runtime_dir

    data = domain_status(plan, Engine(), resolve_runtime_dir(runtime_dir))  # and the config's engines
    for name, engine in data.engines.items():
        if not engine.reachable:
            where = "" if len(data.engines) == 1 else f" for the chunks on engine {name}"
            err.print(f"[yellow]warning:[/] {_escape(engine.error or name)}; showing runtime files only{where}")
    if as_json:
        print(json.dumps(data.to_json(), indent=2))
        return
    _table(plan.domain.name, bool(plan.domain.engines), data)
    table = Table(title="signals", title_justify="left")
    stale = data.stale
    for col in ("signal", "tv", "response", "prompt", *(["note"] if stale else [])):
        table.add_column(col)
    for name, s in sorted(data.signals.items()):
        note = [f"[yellow]may be stale: {_escape(stale[name])}[/]" if name in stale else ""] if stale else []
        table.add_row(name, s.tv, ", ".join(s.response), s.prompt, *note)
    out.print(table)
    for file, problem in data.problems.items():
        err.print(f"[yellow]warning:[/] runtime file {file} ignored: {_escape(problem)}")


app.command("ps", help="Short for `pnr status`: chunk states, containers, truth values.")(status)


@app.command()
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
    plan = _plan(config)
    from pnr.cli.render import LogPrinter
    from pnr.engines.engine import Engine
    from pnr.lifecycle.logs import LogFollower, log_sources, read_logs

    try:
        sources, missing = log_sources(plan, Engine(), chunks or [])
    except PnrError as exc:
        raise _fail(exc) from None
    for name in missing:
        err.print(f"[yellow]note:[/] {name} has no container (not up; `pnr up {config}`)")
    colour = out.is_terminal and not no_color and not os.environ.get("NO_COLOR")
    printer = LogPrinter([s.chunk for s in sources], colour=colour)
    try:
        if not follow:
            try:
                lines = read_logs(sources, tail=tail, timestamps=timestamps)
            except PnrError as exc:
                raise _fail(exc) from None
            sys.stdout.writelines(printer.format(ln.chunk, ln.text, ln.stamp) for ln in lines)
            sys.stdout.flush()
            return
        _follow_logs(LogFollower(sources, tail=tail, timestamps=timestamps), printer)
    except BrokenPipeError:  # `pnr logs ... | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _follow_logs(follower: Any, printer: Any) -> None:
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
                    err.print(f"[yellow]warning:[/] {item.chunk}: {_escape(item.error)}")
                continue
            sys.stdout.write(printer.format(item.chunk, item.text, item.stamp))
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C ends following: a normal end
        pass
    finally:
        follower.stop()


@app.command()
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
    plan = _plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle import RunControl, RunNote
    from pnr.lifecycle.restart import restart_chunk
    from pnr.settings import get_settings, resolve_runtime_dir

    rdir = resolve_runtime_dir(runtime_dir)
    progress = _Progress()
    control = RunControl()
    control.listen(lambda event: None if isinstance(event, RunNote) else progress(event))
    interrupted = _on_ctrl_c(control.interrupt)
    out.print(f"pnr restart [bold]{plan.domain.name}[/] {_escape(chunk)}; runtime {rdir}")
    log = (lambda m: out.print(f"  {time.monotonic() - progress.t0:7.2f}s  {_escape(m)}")) if verbose else None
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
        raise _fail(exc) from None
    if result.mode == "live-run":
        out.print(
            f"a pnr run of domain {plan.domain.name} is live (pid {result.live_pid}, e.g. `pnr up --watch`): "
            f"restarted container {result.container} only; that run's watch reacts to it"
        )
        if not result.ok:
            raise _fail_with(1, result.message)
        out.print(f"[green]restarted:[/] {chunk}; the live run reports every chunk ready again ({result.seconds:.1f}s)")
        return
    if result.not_watched:
        out.print(f"not watched (they were not ready before): {', '.join(result.not_watched)}")
    if not result.ok:
        if interrupted:
            err.print("[yellow]interrupted.[/] The containers are left as they are; `pnr status` shows them.")
            raise typer.Exit(130)
        raise _fail_with(1, result.message)
    n = len(result.watched)
    out.print(
        f"[green]restarted:[/] {chunk} ({result.container}); {n} chunk{'s' * (n != 1)} ready again "
        f"in {result.seconds:.1f}s"
    )


@app.command()
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
    plan = _plan(config)
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
        raise _fail(exc) from None
    out.print(
        f"down: {plan.domain.name}: {len(report['containers'])} container(s), "
        f"{len(report['networks'])} network(s) removed"
    )


@app.command()
def serve(
    configs: Annotated[list[Path], typer.Argument(help="domain configs (JSON) to serve", show_default=False)],
    runtime_dir: RuntimeOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="timeout of each bring-up, seconds [default: $PNR_TIMEOUT_SECONDS or 300]", min=0.1),
    ] = None,
    up_cron: Annotated[str, typer.Option(help="bring-up schedule (cron); '' for none")] = "0 7 * * 1-5",
    down_cron: Annotated[str, typer.Option(help="tear-down schedule (cron); '' for none")] = "0 20 * * 1-5",
    timezone: Annotated[str, typer.Option(help="time zone of the schedules")] = "UTC",
    activate: Annotated[
        bool, typer.Option("--activate-schedules", help="schedules run (default: attached but paused)")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="at most this many runs at once")] = None,
) -> None:
    """Serve bring-up/tear-down deployments of CONFIGS in this process (Prefect serve; no work pool needed).

    Run them from the UI or with `prefect deployment run pnr-up/NAME` (NAME = the config file's stem with dashes).
    Uses PREFECT_API_URL if set, else pnr's resident server (started if needed, see `pnr server`)."""
    for config in configs:
        _plan(config)  # every problem before anything is served
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "INFO")  # a server's log: show runs
    _quiet_prefect(False)
    if not os.environ.get("PREFECT_API_URL"):
        backend = _backend(ephemeral=False)
        os.environ["PREFECT_API_URL"] = backend.api_url
        out.print(f"serving to pnr's Prefect server: UI {backend.ui_url}")
    from pnr.prefect.serve import ServeOptions, deployment_name, serve_configs

    options = ServeOptions(
        runtime_dir=str(runtime_dir) if runtime_dir else None,
        timeout_seconds=timeout,
        up_cron=up_cron or None,
        down_cron=down_cron or None,
        timezone=timezone,
        schedules_active=activate,
    )
    for config in configs:
        name = deployment_name(config)
        out.print(f"serving pnr-up/{name} and pnr-down/{name} ({config})")
    if not activate:
        out.print("schedules are attached but paused (--activate-schedules to run them)")
    try:
        serve_configs([str(c) for c in configs], options, limit=limit)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {_escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command("import")
def import_(
    compose_file: Annotated[
        Path | None,
        typer.Argument(
            help="a compose file, or a folder with compose.yaml / docker-compose.yml; its override file is read "
            "too, as compose does [default: the current folder]",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file", "-f", metavar="FILE", help="a compose file (repeatable: merged in order, as docker compose -f)"
        ),
    ] = None,
    output_arg: Annotated[
        str | None,  # not a Path: a trailing "/" (a folder) must survive
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="write the domain to this file, or into this folder (a name ending in /) as <project>.json "
            "[default: stdout]",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing output file")] = False,
    name: Annotated[
        str | None,
        typer.Option(
            help="project (domain) name [default: COMPOSE_PROJECT_NAME, else the file's name:, else its folder's]"
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile", help="enable a compose profile (repeatable; '*' for all) [default: COMPOSE_PROFILES]"
        ),
    ] = None,
) -> None:
    """Translate a compose project into a pnr domain config: depends_on conditions become gates, healthchecks
    become probes. Every key pnr treats differently is reported on stderr with its path (see docs/compose.md)."""
    from pnr.compose import import_compose

    if compose_file is not None and file:
        raise _fail_with(2, "give the compose file either as an argument or with -f, not both")
    source: Any = list(file) if file else (compose_file or Path.cwd())
    output = Path(output_arg) if output_arg else None
    into_folder = output is not None and (output.is_dir() or str(output_arg).endswith(("/", os.sep)))
    try:
        where = (output.resolve() if into_folder else output.resolve().parent) if output else None
        result = import_compose(source, name, profiles=profile or (), output_dir=where)
    except ConfigError as exc:
        raise _fail(exc) from None
    shown = str(result.files[0])
    for note in result.notes:
        err.print(f"[yellow]note:[/] {_escape(note.render(shown))}")
    if output is None:
        print(result.to_json(), end="")
        return
    if into_folder:
        output = output / f"{result.domain['name']}.json"
    _write_domain(output, result.to_json(), force)
    chunks = sum(len(c["design_chunks"]) for c in result.domain["cpuxs"].values())
    read = " + ".join(str(f) for f in result.files)
    out.print(
        f"wrote {output} from {read}: domain {result.domain['name']}, {chunks} chunk(s), {len(result.notes)} "
        f"note(s); next: pnr up {output}"
    )


def _write_domain(output: Path, text: str, force: bool) -> None:
    """Write an imported domain; an existing file only with --force (exit 2 otherwise, nothing written)."""
    unwritable = f"{output}: cannot write the domain here ({{}}); give -o a writable file or folder"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail_with(2, unwritable.format(exc.strerror or exc)) from None
    try:
        with output.open("w" if force else "x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise _fail_with(
            2, f"{output}: exists; give --force to overwrite it, --name for another project name, or another -o"
        ) from None
    except OSError as exc:
        raise _fail_with(2, unwritable.format(exc.strerror or exc)) from None


@signal_app.command("set")
def signal_set(
    config: ConfigArg,
    name: Annotated[str, typer.Argument(help="signal name")],
    tv: Annotated[str, typer.Option("--tv", help="Y, N or U (any case)")],
    response: Annotated[list[str] | None, typer.Option("--response", help="response word (repeatable)")] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt text")] = None,
    runtime_dir: RuntimeOpt = None,
) -> None:
    """Set a signal (written to external.json in the runtime folder): opens gates of a waiting run."""
    plan = _plan(config)
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
        raise _fail(exc) from None
    rdir = resolve_runtime_dir(runtime_dir)
    path = set_external_signal(rdir, name, value)
    note = "" if name in plan.consumers else " (no chunk of this domain waits on it)"
    out.print(f"{name} = {value.tv} in {path}{note}")


@signal_app.command("get")
def signal_get(
    config: ConfigArg,
    name: Annotated[str | None, typer.Argument(help="signal name (all if omitted)")] = None,
    runtime_dir: RuntimeOpt = None,
) -> None:
    """Print current signal values as JSON."""
    plan = _plan(config)
    from pnr.runtime.store import UNKNOWN, read_state
    from pnr.settings import resolve_runtime_dir

    state, _problems = read_state(resolve_runtime_dir(runtime_dir), plan.domain.name)
    if name is not None:
        print(json.dumps(state.get(name, UNKNOWN).model_dump()))
    else:
        print(json.dumps({k: v.model_dump() for k, v in sorted(state.items())}, indent=2))


def _fast_path(argv: list[str]) -> Any:
    """`pnr up ...` without typer's parsing when the line is plain: the same `up`, called with the same values.
    Typer builds a pydantic adapter for every parameter of the command it calls (importing pydantic and scanning
    the installed packages' entry points: ~70 ms of a thin client's ~170 ms of CPU). Anything this does not
    take as it is — another command, --help, an unknown or repeated option, a value out of range — goes through
    typer, which says what is wrong."""
    if len(argv) < 2 or argv[0] != "up":
        return None
    kwargs = _parse_up(argv[1:])
    return None if kwargs is None else (lambda: up(**kwargs))


def _up_value_types() -> dict[str, Any]:
    """The value type of each of `up`'s parameters that the fast path reads itself (str, float, Path; `X | None`
    counts as X), from `up`'s own annotations (~0.5 ms): an option of another type goes to typer."""
    import typing

    types = {}
    for name, hint in typing.get_type_hints(up).items():
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
        if len(kinds) == 1 and kinds[0] in (str, float, Path):
            types[name] = kinds[0]
    return types


def _parse_up(args: list[str]) -> dict[str, Any] | None:
    """`up`'s keyword arguments from its command line, read with typer's own table of its options (what
    `get_command` builds, ~10 ms, no pydantic); None where typer should look at it."""
    import typer.main

    params = typer.main.get_command(app).commands["up"].params  # type: ignore[attr-defined]
    table = {opt: p for p in params if p.param_type_name == "option" for opt in p.opts}
    value_types = _up_value_types()
    kwargs: dict[str, Any] = {}
    config: Path | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            if config is not None or not arg:
                return None
            config, i = Path(arg), i + 1
            continue
        param = table.get(arg)
        if param is None or param.name in kwargs or param.secondary_opts:
            return None
        if param.is_flag:
            kwargs[param.name], i = True, i + 1
            continue
        convert = value_types.get(param.name)
        if convert is None or i + 1 >= len(args):
            return None
        value, i = args[i + 1], i + 2
        if convert is float:
            try:
                number = float(value)
            except ValueError:
                return None
            if param.min is not None and not number >= param.min:  # NaN too: typer words the error
                return None
            kwargs[param.name] = number
        else:
            kwargs[param.name] = convert(value)
    return None if config is None else {"config": config, **kwargs}


def _run_app(argv: list[str]) -> None:
    fast = _fast_path(argv)
    if fast is None:
        app()
        return
    try:  # what typer's standalone mode does with these (typer.core._main)
        fast()
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


def main() -> None:
    code: int | str | None = 0
    try:
        _run_app(sys.argv[1:])
    except PnrError as exc:  # anything not handled by a command
        err.print(_escape(str(exc)))
        code = exit_status_of(exc)
    except SystemExit as exc:
        code = exc.code
    _exit(code)


def _exit(code: int | str | None) -> None:
    """Exit without waiting for Python's interpreter teardown: after a flow ran in this process it can take
    seconds (no Python code runs then). The exit handlers still run first — Prefect flushes its events and
    logs there — so nothing is lost."""
    import atexit

    if isinstance(code, str):
        err.print(code)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code or 0)
