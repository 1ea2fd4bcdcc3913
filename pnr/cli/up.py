"""`pnr up`: check the config, hand the bring-up to `run_up`, render its progress and outcome (table, timeline,
last lines); `--dry-run` shows what a bring-up would do."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pnr.cli.common import (
    ConfigArg,
    EnvFileOpt,
    RuntimeOpt,
    err,
    escape,
    fail,
    fail_with,
    out,
    plural,
    quiet_prefect,
    read_plan,
)
from pnr.cli.view import Progress, chunk_table, on_ctrl_c
from pnr.exceptions import ConfigError, PnrError

if TYPE_CHECKING:
    from pnr.backend.choose import Backend
    from pnr.backend.protocol import Accepted, UpOutcome
    from pnr.model.plan import Plan
    from pnr.records import DomainStatus


def _flag(name: str, help: str, *short: str) -> Any:
    """A flag option: a bool that is False unless given."""
    return typer.Option(name, *short, help=help)


CpuxOpt = Annotated[str | None, typer.Option(help="bring up only this cpux")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help="seconds before giving up (bounds waiting on external signals) [default: $PNR_TIMEOUT_SECONDS or 300]",
        min=0.1,
    ),
]
BuildOpt = Annotated[bool, _flag("--build", "rebuild images that have a build_path")]
RecreateOpt = Annotated[bool, _flag("--force-recreate", "recreate containers even if unchanged")]
DryRunOpt = Annotated[
    bool, _flag("--dry-run", "show what would be created, reused or recreated, and why; touch nothing")
]
VerboseOpt = Annotated[
    bool,
    _flag(
        "--verbose",
        "show Prefect's own logs of a run in this process (a run on pnr's resident runner logs to the UI "
        "and `pnr server logs`)",
        "-v",
    ),
]
WatchOpt = Annotated[
    bool,
    _flag(
        "--watch",
        "after bring-up, keep probing; regressions flip signals and dependents follow on_dependency_lost; "
        "Ctrl-C ends the watch",
    ),
]
WatchSecondsOpt = Annotated[
    float | None, typer.Option("--watch-seconds", help="end the watch after this long", min=0.1)
]
EphemeralOpt = Annotated[
    bool,
    _flag(
        "--ephemeral-server",
        "use a throw-away Prefect server for this run instead of pnr's resident one [default: $PNR_EPHEMERAL_SERVER]",
    ),
]
TimelineOpt = Annotated[
    Path | None,
    typer.Option(
        "--timeline",
        help="write the run's readiness timeline as a picture: FILE.svg, or FILE.png (needs chromium)",
        show_default=False,
    ),
]


class _Header:
    """The `pnr up DOMAIN (N chunks, cpux ...)` line: from the config read here, or from what the runner
    accepted (the client of a running runner never loads the config itself)."""

    def __init__(self, rdir: Path) -> None:
        self.rdir = rdir
        self.domain: str | None = None
        self.engines = False

    def show(self, domain: str, n: int, cpuxs: list[str], engines: bool = False) -> None:
        self.domain, self.engines = domain, engines
        out.print(f"pnr up [bold]{domain}[/] ({plural(n, 'chunk')}, cpux {', '.join(cpuxs)}); runtime {self.rdir}")

    def accepted(self, event: Accepted) -> None:
        if self.domain is None:  # else shown from the config read here, with the same facts
            self.show(event.domain, event.chunks, event.cpuxs, event.engines)


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
    if dry_run:
        _dry_run(config, runtime_dir, force_recreate)
        return
    chromium = _timeline_target(timeline)
    quiet_prefect(verbose)
    from pnr.backend.protocol import UpRequest
    from pnr.backend.run import run_up
    from pnr.settings import resolve_runtime_dir

    rdir = resolve_runtime_dir(runtime_dir)
    header = _Header(rdir)
    # pnr's runner already up: it checks the config (exit 2 before any flow run) and the run starts at once;
    # this process then never loads the config models. Else check here first: a bad config starts no server.
    backend = _backend(ephemeral_server, start=False)
    plan = None if backend is not None and backend.use_runner else _checked(config, cpux, env_file, header)
    backend = backend or started_backend(ephemeral_server)
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
    progress = Progress()
    outcome = run_up(request, backend, progress, header.accepted, on_ctrl_c, shown_as=str(config))
    if outcome.exit_status == 2 and header.domain is None:  # the runner found the config bad: nothing ran
        raise fail_with(2, outcome.message)
    status, svg = _after_run(config, plan, outcome, header, timeline is not None)
    if status is not None:
        chunk_table(status, header.engines)
    if timeline is not None and svg is not None:
        _write_timeline(svg, timeline, chromium)
    _report(backend, outcome, config, watch, progress.t0)


def _checked(config: Path, cpux: str | None, env_files: list[Path] | None, header: _Header) -> Plan:
    """The config's plan, checked here before a server or runner is started for it (exit 2 when bad)."""
    plan = read_plan(config, env=True, env_files=env_files)
    try:
        plan.cpuxs_to_run(cpux, str(config))
    except ConfigError as exc:
        raise fail(exc) from None
    header.show(plan.domain.name, len(plan.chunks), plan.cpux_order, bool(plan.domain.engines))
    return plan


def _after_run(
    config: Path, plan: Plan | None, outcome: UpOutcome, header: _Header, timeline: bool
) -> tuple[DomainStatus | None, str | None]:
    """The chunk table's status and the timeline's SVG (`timeline`) of a finished run. The table is the one the
    run sent; for a failed run it is read here (the engine and runtime files; only the files after an engine was
    lost: it would make the user wait for another ping). The config is read here only if it was not before."""
    known = header.domain is not None  # the header was shown: it knows whether the domain names engines
    if outcome.summary is not None and known and not timeline:
        return outcome.summary, None
    plan = plan or read_plan(config)
    header.engines = header.engines if known else bool(plan.domain.engines)
    status = outcome.summary if known else None
    if status is None:
        from pnr.engines.engine import Engine
        from pnr.lifecycle.status import domain_status

        with contextlib.suppress(PnrError):
            status = domain_status(plan, Engine() if outcome.error != "EngineUnreachable" else None, header.rdir)
    if not timeline:
        return status, None
    from pnr.lifecycle.timeline import timeline_svg

    data, end = _timeline_data(plan, header.rdir, outcome)
    return status, timeline_svg(data, plan.depends_on, title=f"readiness timeline of {plan.domain.name}", end=end)


def _report(backend: Backend, outcome: UpOutcome, config: Path, watch: bool, t0: float) -> None:
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
        raise fail_with(outcome.exit_status, outcome.message)
    result = outcome.result or {}
    n = sum(len(v) for v in result.get("cpuxs", {}).values())
    if watch:  # the watch ended cleanly (Ctrl-C, cancellation, --watch-seconds): the domain stays up
        out.print(f"[green]up:[/] {plural(n, 'chunk')}; watched until: {escape(result['watch']['ended'])}")
        return
    out.print(f"[green]up:[/] {plural(n, 'chunk')} completed in {time.monotonic() - t0:.1f}s")


def _timeline_target(path: Path | None) -> str | None:
    """Check `--timeline FILE` before anything runs (exit 2): .svg, or .png with chromium to render it."""
    if path is None:
        return None
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise fail_with(2, f"--timeline {path}: the file must end in .svg or .png")
    if not path.resolve().parent.is_dir():
        raise fail_with(2, f"--timeline {path}: folder {path.resolve().parent} does not exist")
    if suffix == ".svg":
        return None
    from pnr.cli.render import find_chromium

    chromium = find_chromium()
    if chromium is None:
        raise fail_with(
            2,
            f"--timeline {path}: a PNG is rendered with headless Chromium, which is not installed "
            "(Debian: apt-get install chromium); write FILE.svg instead (any browser shows it)",
        )
    return chromium


def _timeline_data(plan: Plan, rdir: Path, outcome: UpOutcome) -> tuple[dict[str, Any], float | None]:
    """The chunks of the timeline and its end: from the run's result, or for a run that failed from the
    chunk-state file it left (up to now)."""
    from pnr.runtime import ChunkStateFile

    if outcome.ok and outcome.result is not None:
        return {n: c for chunks in outcome.result["cpuxs"].values() for n, c in chunks.items()}, None
    return ChunkStateFile(rdir, plan.domain.name).chunks(), time.time()


def _write_timeline(svg: str, path: Path, chromium: str | None) -> None:
    """Write the timeline: the SVG as it is, or a PNG rendered by `chromium`; a warning if it cannot be."""
    try:
        if chromium is None:
            path.write_text(svg, encoding="utf-8")
        else:
            from pnr.cli.render import svg_to_png

            svg_to_png(svg, path, chromium)
    except (OSError, RuntimeError) as exc:
        err.print(f"[yellow]warning:[/] timeline not written: {escape(str(exc))}")
        return
    out.print(f"timeline: {path}")


def _backend(ephemeral: bool, start: bool = True) -> Backend | None:
    """Where the run goes (see pnr.backend.choose); says so once when pnr's server had to be started.
    `start=False`: None instead of starting pnr's server or runner."""
    from pnr.backend.choose import choose_backend

    try:
        backend = choose_backend(ephemeral, start=start)
    except PnrError as exc:
        raise fail(exc) from None
    if backend is not None and backend.started_now:
        out.print(
            f"started pnr's Prefect server in the background: UI {backend.ui_url} "
            "(it stays up for the next commands; `pnr server stop` stops it)"
        )
    return backend


def started_backend(ephemeral: bool) -> Backend:
    """Where the run goes, pnr's server or runner started first if need be."""
    backend = _backend(ephemeral)
    if backend is None:  # choose_backend(start=True) always chooses
        raise fail_with(1, "no Prefect backend could be chosen")
    return backend


def _dry_run(config: Path, runtime_dir: Path | None, force: bool) -> None:
    """The `--dry-run` table: what `pnr up` would create, reuse, recreate or refuse (exit 1), and why."""
    plan = read_plan(config)
    from pnr.engines.engine import Engine
    from pnr.lifecycle.ops import plan_actions
    from pnr.settings import resolve_runtime_dir

    try:
        rows = plan_actions(plan, Engine(), str(config), resolve_runtime_dir(runtime_dir), force=force)
    except PnrError as exc:
        raise fail(exc) from None
    title = f"pnr up --dry-run {plan.domain.name} (nothing was touched)"
    if out.is_terminal:
        table = Table(title=title, title_justify="left")
        for col in ("chunk", "container", "action", "why"):
            table.add_column(col)
        style = {"create": "cyan", "reuse": "green", "recreate": "yellow", "refuse": "red"}
        for row in rows:
            action, why = row["action"], escape("; ".join(row["reasons"]))
            table.add_row(row["chunk"], row["container"], f"[{style[action]}]{action}[/]", why)
        out.print(table)
    else:  # piped: one unwrapped line per chunk, so reasons stay whole for grep and scripts
        out.print(title)
        for row in rows:
            why = escape("; ".join(row["reasons"]))
            out.print(f"  {row['chunk']:<22} {row['container']:<28} {row['action']:<9} {why}".rstrip())
    if any(row["action"] == "refuse" for row in rows):
        raise typer.Exit(1)
