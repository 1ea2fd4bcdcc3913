"""`pnr serve`: bring-up and tear-down deployments of domain configs, served in this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pnr.cli.common import err, escape, fail, out, quiet_prefect, read_plan
from pnr.cli.options import RuntimeOpt
from pnr.cli.view import server_started
from pnr.exceptions import PnrError


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
        read_plan(config)  # every problem before anything is served
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "INFO")  # a server's log: show runs
    quiet_prefect(False)
    if not os.environ.get("PREFECT_API_URL"):
        from pnr.backend.choose import choose_backend

        try:
            backend = choose_backend()
        except PnrError as exc:
            raise fail(exc) from None
        if backend.started_now:
            server_started(backend.ui_url)
        if backend.api_url:  # pnr's managed server always has one
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
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
