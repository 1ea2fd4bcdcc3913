"""`pnr server start|stop|status|logs`: pnr's resident Prefect server (UI and API) and its runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import typer

from pnr.cli.common import fail, out
from pnr.exceptions import PnrError

server_app = typer.Typer(
    no_args_is_help=True,
    help="pnr's resident Prefect server: UI, API and the runner that executes `pnr up` (see docs/prefect.md).",
)


@server_app.command()
def start(
    host: Annotated[str | None, typer.Option(help="address to serve on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port of UI and API [default: 4200]")] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="postgresql+asyncpg://user:pass@host:port/db (PostgreSQL ≥ 14 with pg_trgm) "
            "[default: $PNR_SERVER_DATABASE_URL, else SQLite in the state dir]",
        ),
    ] = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="start only the server, not the runner")] = False,
) -> None:
    """Start the server in the background (or find it running); it outlives this shell."""
    from pnr.backend import runner, server

    try:
        info, started = server.ensure_running(host, port, database)
        pong = None if no_runner else runner.ensure_runner(info.state_dir, info.api_url)
    except PnrError as exc:
        raise fail(exc) from None
    how = f"started in {info.startup_seconds:.1f}s" if started and info.startup_seconds else "already running"
    out.print(f"pnr server {how}: pid {info.pid}, {info.database} database")
    out.print(f"  UI   {info.ui_url}")
    out.print(f"  API  {info.api_url}")
    if pong is not None:
        out.print(f"  runner {_pool_text(runner.pool_status(info.state_dir, pong))}: executes `pnr up` runs")
    out.print(f"  state {info.state_dir}")


@server_app.command()
def stop() -> None:
    """Stop the runner and the server (runs in progress end as after Ctrl-C)."""
    from pnr.backend import runner, server

    try:
        config = server.ServerConfig.resolve()
        runner_pid = runner.stop_runner(config.state_dir)
        info = server.stop()
    except PnrError as exc:
        raise fail(exc) from None
    if runner_pid:
        out.print(f"stopped the runner (pid {runner_pid})")
    out.print(f"stopped pnr's Prefect server (pid {info.pid})" if info else "pnr's Prefect server was not running")


@server_app.command()
def status() -> None:
    """Is the server running and healthy; where are its UI, API and state. Exit 1 when it is not running."""
    from pnr.backend import runner, server

    info = server.status()
    if info is None:
        out.print("pnr's Prefect server is not running (`pnr server start`, or any `pnr up`, starts it)")
        raise typer.Exit(1)
    health = "healthy" if info.healthy else "not answering"
    out.print(f"pnr server: pid {info.pid}, {health}, {info.database} database, since {info.started_at}")
    out.print(f"  UI   {info.ui_url}")
    out.print(f"  API  {info.api_url}")
    pool = runner.pool_status(info.state_dir)
    active = sum(int(p.get("active") or 0) for p in pool)
    out.print(f"  runner {_pool_text(pool)}, {active} run(s) in progress" if pool else "  runner: not running")
    out.print(f"  state {info.state_dir}")
    if not info.healthy:
        raise typer.Exit(1)


@server_app.command()
def logs(
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines")] = 50,
    of_runner: Annotated[bool, typer.Option("--runner", help="the runner's log instead of the server's")] = False,
) -> None:
    """The last lines of the server's (or the runner's) log."""
    from pnr.backend import runner, server

    if of_runner:
        path = runner.RunnerPaths(server.ServerConfig.resolve().state_dir).log_file
        text = path.read_text(errors="replace") if path.exists() else ""
        print("\n".join(text.splitlines()[-lines:]))
        return
    print(server.logs(lines))


def _pool_text(pool: Sequence[Mapping[str, object]]) -> str:
    """ "pid 12" or "pids 12, 13 (2 processes; 1 of 3 missing)" (from the members' pongs)."""
    pids = ", ".join(str(p["pid"]) for p in pool)
    told = pool[0].get("pool") if pool else None
    size = told if isinstance(told, int) and told else (1 if pool else 0)
    text = f"pid {pids}" if len(pool) == 1 else f"pids {pids} ({len(pool)} processes)"
    return text + (f"; {size - len(pool)} of {size} not answering" if len(pool) < size else "")
