"""Which Prefect backend a `pnr up` uses, in this order:

1. `PREFECT_API_URL`, if set: that server; the run executes in the `pnr up` process.
2. a throw-away server for this one command, if asked (`pnr up --ephemeral-server`, `PNR_EPHEMERAL_SERVER=1`).
3. pnr's resident server (`pnr server start`): the one that answers, else it is started in the background and
   left running for the next command. Its resident runner executes the run, and `pnr up` is a thin client
   (unless `PNR_RUNNER=0`, or the runner serves another Docker engine than the client's environment names).

Nothing here imports Prefect: the server and the runner are asked through pnr.backend.server and runner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from pnr.backend import runner, server
from pnr.settings import get_settings


@dataclass(frozen=True)
class Backend:
    kind: Literal["external", "ephemeral", "managed"]
    api_url: str | None = None
    ui_url: str | None = None
    started_now: bool = False  # the managed server was started by this command
    state_dir: Path | None = None
    use_runner: bool = False  # the resident runner executes the run

    def flow_run_url(self, flow_run_id: str | None) -> str | None:
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}" if self.ui_url and flow_run_id else None


def _same_env(pong: runner.Pong) -> bool:
    """The runner serves the engine this client's environment names (resolved now, on both sides: a
    `docker context use` since the last run moves the next one) from the same docker CLI config."""
    return bool(pong.get("engine")) and pong.get("engine") == runner.engine_env()


def ui_url_of(api_url: str) -> str:
    """Prefect's UI next to its API: PREFECT_UI_URL if set, else the API URL without its /api."""
    return os.environ.get("PREFECT_UI_URL") or api_url.rstrip("/").removesuffix("/api")


@overload
def choose_backend(ephemeral: bool = False, *, start: Literal[True] = True) -> Backend: ...
@overload
def choose_backend(ephemeral: bool = False, *, start: bool) -> Backend | None: ...


def choose_backend(ephemeral: bool = False, *, start: bool = True) -> Backend | None:
    """See the module docstring. Starting the managed server may raise `server.ServerError`. `start=False`:
    None where pnr's server or runner would have to be started (or replaced) first."""
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        return Backend("external", api_url, ui_url_of(api_url))
    settings = get_settings()
    if ephemeral or settings.ephemeral_server:
        return Backend("ephemeral")
    if not start:
        up = server.running()
        pong = runner.ready_pool(up.state_dir, up.api_url) if up is not None and settings.runner else None
        if up is None or pong is None or not _same_env(pong):
            return None
        return Backend("managed", up.api_url, up.ui_url, False, up.state_dir, True)
    # a new server migrates its database for seconds: the runner imports Prefect meanwhile, then waits for it
    info, started_now = server.ensure_running(wait=not settings.runner)
    use_runner = False
    if settings.runner:
        pong = runner.ensure_runner(info.state_dir, info.api_url)
        info = server.ensure_running()[0]  # healthy by now (the runner waited for it); else this says why
        use_runner = pong is not None and _same_env(pong)
    return Backend("managed", info.api_url, info.ui_url, started_now, info.state_dir, use_runner)
