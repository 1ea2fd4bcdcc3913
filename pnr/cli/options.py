"""The arguments and options of pnr's commands as typer declares them (those several commands take, and `pnr up`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def _flag(name: str, help: str, *short: str) -> object:
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
