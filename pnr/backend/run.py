"""One call for a bring-up below the CLI: `run_up(request, backend, ...)` runs it on pnr's resident runner or in
this process, whichever the backend chose, and returns its `UpOutcome`. The caller hears the run's events and,
from the runner, the header facts (`Accepted`); it hands over how Ctrl-C reaches the run (`on_ctrl_c`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pnr.backend.protocol import Accepted, UpOutcome, UpRequest, from_message
from pnr.exceptions import EngineError, PnrError
from pnr.records import RunEvent

if TYPE_CHECKING:
    from pnr.backend.choose import Backend

# installs `stop` as what Ctrl-C does during the run; the list it returns is non-empty once Ctrl-C was pressed
CtrlC = Callable[[Callable[[], object]], Sequence[bool]]


def run_up(
    request: UpRequest,
    backend: Backend,
    on_event: Callable[[RunEvent], None],
    on_accepted: Callable[[Accepted], None],
    on_ctrl_c: CtrlC,
    *,
    env: Mapping[str, str] | None = None,
    shown_as: str | None = None,
) -> UpOutcome:
    """Bring `request` up where `backend` says. `env`: the environment `${VAR}`s are taken from (default:
    this process's); `shown_as`: the config's path as the user wrote it (messages name it so)."""
    if backend.use_runner and backend.state_dir is not None:
        return _on_runner(backend, request, on_event, on_accepted, on_ctrl_c, env or os.environ, shown_as)
    return _here(backend, request, on_event, on_ctrl_c)


def _here(backend: Backend, request: UpRequest, on_event: Callable[[RunEvent], None], on_ctrl_c: CtrlC) -> UpOutcome:
    """The flow in this process (PREFECT_API_URL, a throw-away server, or no runner)."""
    if backend.api_url:
        os.environ["PREFECT_API_URL"] = backend.api_url
    from pnr.lifecycle import RunControl, use_control
    from pnr.prefect.flows import bring_up, quiet_prefect_run, start_detached_ephemeral_server

    control = RunControl()
    control.listen(on_event)
    pressed = on_ctrl_c(lambda: control.interrupt("interrupted (Ctrl-C)"))
    try:
        if backend.kind == "ephemeral":
            try:
                start_detached_ephemeral_server()
            except RuntimeError as exc:
                raise EngineError(
                    f"could not start Prefect's temporary server ({exc}); "
                    "use pnr's resident server (`pnr server start`) or point PREFECT_API_URL at a Prefect server"
                ) from None
        try:
            with quiet_prefect_run(), use_control(control):
                result = bring_up(**request.flow_parameters())
        finally:
            if backend.kind == "ephemeral":
                _drain_to_api()
    except (PnrError, KeyboardInterrupt) as exc:
        stopped = bool(pressed) or isinstance(exc, KeyboardInterrupt)
        return UpOutcome.failed(exc, control.flow_run_id, interrupted=stopped)
    return UpOutcome.done(result, control.flow_run_id)


def _drain_to_api(timeout: float = 10.0) -> None:
    """Send the run's queued logs and events while the throw-away server still runs: at exit it may stop first,
    and Prefect then prints "--- Error logging to API ---" on stderr."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout, at_exit=False)


def _on_runner(
    backend: Backend,
    request: UpRequest,
    on_event: Callable[[RunEvent], None],
    on_accepted: Callable[[Accepted], None],
    on_ctrl_c: CtrlC,
    env: Mapping[str, str],
    shown_as: str | None,
) -> UpOutcome:
    """Let the resident runner execute the run; follow it live. Ctrl-C interrupts it there."""
    from pnr.backend.runner import RemoteRun

    assert backend.state_dir is not None
    remote = RemoteRun(backend.state_dir, request, env, shown_as=shown_as)
    pressed = on_ctrl_c(lambda: remote.interrupt("interrupted (Ctrl-C)"))
    try:
        for raw in remote.events():
            message = from_message(raw)
            if isinstance(message, Accepted):
                on_accepted(message)
            elif not isinstance(message, UpOutcome):
                on_event(message)
    except KeyboardInterrupt:
        return UpOutcome.stopped()
    except PnrError as exc:
        return UpOutcome.failed(exc)
    finally:
        remote.close()
    outcome = from_message(remote.outcome) if remote.outcome is not None else None
    if not isinstance(outcome, UpOutcome):
        return UpOutcome(False, 1, "pnr's runner sent no outcome (see `pnr server logs`)")
    if not outcome.ok and pressed and not outcome.interrupted:
        return UpOutcome(False, outcome.exit_status, outcome.message, True, outcome.flow_run_id, error=outcome.error)
    return outcome
