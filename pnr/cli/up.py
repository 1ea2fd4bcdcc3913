"""`pnr up`: hand the bring-up to `run_up` (`pnr.backend.run`), render what it hears and the outcome it returns
(header, progress lines, chunk table, timeline, last lines); `--dry-run` shows what a bring-up would do
(`pnr.lifecycle.ops.dry_run`). The config is read below, never here. Neither typer nor rich is imported on the
way of a bring-up that ends well (pnr.cli.fast reads a plain `pnr up` line; pnr.cli.app declares the command's
options for typer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pnr.backend.protocol import Accepted, BackendChosen, UpEvent, UpOutcome, UpRequest
from pnr.cli.common import err, escape, exit_with, fail, fail_with, out, plural, quiet_prefect
from pnr.cli.view import Progress, chunk_table, on_ctrl_c, server_started
from pnr.exceptions import PnrError

if TYPE_CHECKING:
    from pnr.records import RunTimeline


class _Screen:
    """What `pnr up` shows while the run goes: the header line, a server start, the progress lines."""

    def __init__(self) -> None:
        self.progress = Progress()
        self.engines = False  # the domain names engines: the chunk table says which one each chunk runs on

    def __call__(self, event: UpEvent) -> None:
        if isinstance(event, Accepted):
            self.engines = event.engines
            cpuxs = ", ".join(event.cpuxs)
            out.print(
                f"pnr up [bold]{event.domain}[/] ({plural(event.chunks, 'chunk')}, cpux {cpuxs}); "
                f"runtime {event.runtime_dir}"
            )
        elif isinstance(event, BackendChosen):
            if event.started_now:
                server_started(event.ui_url)
            if event.early:  # the run began before: its seconds go on
                self.progress.line("the flow run takes over")
            else:
                self.progress.restart()  # the run's seconds count from its hand-over
        else:
            self.progress(event)


def up(
    config: Path,
    cpux: str | None = None,
    runtime_dir: Path | None = None,
    env_file: list[Path] | None = None,
    timeout: float | None = None,
    build: bool = False,
    force_recreate: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
    watch: bool = False,
    watch_seconds: float | None = None,
    ephemeral_server: bool = False,
    timeline: Path | None = None,
) -> None:
    """`pnr up` (its options: pnr.cli.app); ends by raising the exit of a run that did not complete."""
    if dry_run:
        _dry_run(config, runtime_dir, force_recreate)
        return
    chromium = _timeline_target(timeline)
    quiet_prefect(verbose)
    from pnr.backend.run import run_up  # the backend's modules: only for a bring-up

    request = UpRequest(
        config_path=str(config),
        cpux=cpux,
        runtime_dir=str(runtime_dir) if runtime_dir is not None else None,
        timeout_seconds=timeout,
        build=build,
        force_recreate=force_recreate,
        watch=watch,
        watch_seconds=watch_seconds,
        env_files=[str(path) for path in env_file] if env_file else None,
    )
    screen = _Screen()
    outcome = run_up(request, screen, ephemeral=ephemeral_server, on_ctrl_c=on_ctrl_c)
    if outcome.status is not None:
        chunk_table(outcome.status, screen.engines)
    if timeline is not None and outcome.timeline is not None:
        _write_timeline(outcome.timeline, timeline, chromium)
    _report(outcome, request, screen.progress.t0)


def _report(outcome: UpOutcome, request: UpRequest, t0: float) -> None:
    """The run's last lines: its flow run in the UI, then how it ended (exit status as the outcome says)."""
    if outcome.flow_run_url:
        out.print(f"flow run: {outcome.flow_run_url}")
    config = request.config_path
    if not outcome.ok:
        if outcome.interrupted:
            err.print(
                f"[yellow]interrupted.[/] Containers already started are left running (see the table above); "
                f"remove them with `pnr down {config}`, or run `pnr up {config}` again to continue."
            )
            raise exit_with(130)
        raise fail_with(outcome.exit_status, outcome.message)
    n = outcome.chunk_count
    if request.watch:  # the watch ended cleanly (Ctrl-C, cancellation, --watch-seconds): the domain stays up
        out.print(f"[green]up:[/] {plural(n, 'chunk')}; watched until: {escape(outcome.watch_ended)}")
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


def _write_timeline(timeline: RunTimeline, path: Path, chromium: str | None) -> None:
    """Write the run's timeline: an SVG as it is, or a PNG rendered by `chromium`; a warning if it cannot be."""
    from pnr.lifecycle.timeline import run_timeline_svg

    svg = run_timeline_svg(timeline)
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


def _dry_run(config: Path, runtime_dir: Path | None, force: bool) -> None:
    """The `--dry-run` table: what `pnr up` would create, reuse, recreate or refuse (exit 1), and why."""
    from pnr.lifecycle.ops import dry_run

    try:
        report = dry_run(str(config), runtime_dir, force=force)
    except PnrError as exc:
        raise fail(exc) from None
    title = f"pnr up --dry-run {report.domain} (nothing was touched)"
    if out.is_terminal:
        style = {"create": "cyan", "reuse": "green", "recreate": "yellow", "refuse": "red"}
        rows = [
            (row.chunk, row.container, f"[{style[row.action]}]{row.action}[/]", escape("; ".join(row.reasons)))
            for row in report.actions
        ]
        out.table(title, ("chunk", "container", "action", "why"), rows)
    else:  # piped: one unwrapped line per chunk, so reasons stay whole for grep and scripts
        out.print(title)
        for row in report.actions:
            why = escape("; ".join(row.reasons))
            out.print(f"  {row.chunk:<22} {row.container:<28} {row.action:<9} {why}".rstrip())
    if report.refused:
        raise exit_with(1)
