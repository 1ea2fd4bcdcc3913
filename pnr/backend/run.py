"""One call for a bring-up below the CLI: `run_up(request, on_event)` checks the config (unless pnr's resident
runner does), chooses where the run executes (that runner, or this process), runs it there and returns its
`UpOutcome`: how it ended, the domain's status table and the run's timeline, built by `conclude` wherever the run
executed. When pnr's server or runner has to start first, the bring-up begins here meanwhile (an early start,
pnr.lifecycle.early) and the flow run takes it over. The caller hears the header facts (`Accepted`), the
hand-over (`BackendChosen`) and the run's events, and says how Ctrl-C reaches the run (`on_ctrl_c`); it never
reads the config itself."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pnr.backend.choose import Backend, choose_backend
from pnr.backend.protocol import Accepted, BackendChosen, UpEvent, UpOutcome, UpRequest, from_message
from pnr.exceptions import EngineError, EngineUnreachable, PnrError
from pnr.records import ProgressEvent, RunNote
from pnr.settings import get_settings, resolve_runtime_dir

if TYPE_CHECKING:
    from pnr.lifecycle.early import EarlyStart
    from pnr.model import Plan
    from pnr.records import DomainStatus, RunTimeline

# installs `stop` as what Ctrl-C does during the run; the list it returns is non-empty once Ctrl-C was pressed
CtrlC = Callable[[Callable[[], object]], Sequence[bool]]


def _ctrl_c_as_is(stop: Callable[[], object]) -> Sequence[bool]:
    """Ctrl-C left as Python has it: KeyboardInterrupt."""
    return ()


def run_up(
    request: UpRequest,
    on_event: Callable[[UpEvent], None],
    *,
    ephemeral: bool = False,
    on_ctrl_c: CtrlC = _ctrl_c_as_is,
    env: Mapping[str, str] | None = None,
) -> UpOutcome:
    """Bring `request` up. Its config, runtime folder and env files as the user wrote them (messages name them
    so); `ephemeral`: on a throw-away Prefect server; `env`: the environment `${VAR}`s are taken from (default:
    this process's). A bad config or runtime folder is an outcome with exit status 2, and nothing started."""
    try:
        rdir = resolve_runtime_dir(request.runtime_dir)
        backend = choose_backend(ephemeral, start=False)
        plan = None
        if backend is None or not backend.use_runner:  # else pnr's runner checks it (exit 2 before any flow run)
            plan = _checked(request, env)  # here first: a bad config starts no server
            on_event(_accepted(plan, rdir))
    except PnrError as exc:
        return UpOutcome.failed(exc)
    files = [str(Path(f).resolve()) for f in request.env_files] if request.env_files else None
    early = _early_start(request, plan, rdir, env, files, on_event) if backend is None and not ephemeral else None
    try:
        backend = backend or choose_backend(ephemeral)
    except PnrError as exc:  # the server did not start: what the early start made stays, for `pnr down`
        if early is None:
            return UpOutcome.failed(exc)
        early.hand_over(f"stopped: {exc}")
        return _early_ended(early, exc, plan, rdir)
    except KeyboardInterrupt:
        if early is None:
            raise
        early.hand_over("interrupted (Ctrl-C)")
        return _with_report_here(UpOutcome.stopped(), request)
    if early is not None:  # the flow run takes over; what the early start showed it need not show again
        on_event = _not_again(on_event, early.hand_over())
        if early.engine_lost is not None:  # a flow run would only wait for the same engine again
            return _early_ended(early, early.engine_lost, plan, rdir)
        request = replace(request, early_start=early.id)
    on_event(BackendChosen(backend.ui_url, backend.started_now, early=early is not None))
    request = replace(request, runtime_dir=str(rdir), env_files=files)
    if backend.use_runner and backend.state_dir is not None:
        outcome = _on_runner(backend.state_dir, request, rdir, plan is None, on_event, on_ctrl_c, env)
    else:
        assert plan is not None  # checked above: a backend without the runner was chosen with start=True
        outcome = _here(backend, request, plan, on_event, on_ctrl_c)
    return replace(outcome, flow_run_url=backend.flow_run_url(outcome.flow_run_id))


def _early_start(
    request: UpRequest,
    plan: Plan | None,
    rdir: Path,
    env: Mapping[str, str] | None,
    files: list[str] | None,
    on_event: Callable[[UpEvent], None],
) -> EarlyStart | None:
    """The bring-up begun here while pnr's server or runner starts (`pnr.lifecycle.early`), unless settings or
    the request rule it out: PNR_EARLY_START off, no resident runner, a throw-away or another Prefect server,
    --build and --force-recreate (the flow run would build or recreate a second time)."""
    settings = get_settings()
    if plan is None or not (settings.early_start and settings.runner) or settings.ephemeral_server:
        return None
    if os.environ.get("PREFECT_API_URL") or request.build or request.force_recreate:
        return None
    from pnr.lifecycle.early import EarlyStart

    names = plan.cpuxs_to_run(request.cpux, request.config_path)
    timeout = request.timeout_seconds or settings.timeout_seconds
    on_event(RunNote(plan.domain.name, "early.started", EARLY_NOTE))
    return EarlyStart(plan, request.config_path, rdir, names, timeout, env, files, on_event).start()


EARLY_NOTE = "pnr's Prefect server is starting: the domain comes up meanwhile, and its flow run takes over"


def _early_ended(early: EarlyStart, error: PnrError, plan: Plan | None, rdir: Path) -> UpOutcome:
    """The outcome of a call whose early start no flow run takes over: pnr's server or runner did not start
    (`error`), or an engine stopped answering (then that is the error, and the table asks no engine: that would
    make the user wait for another ping). What the early start made stays, for `pnr down` or the next `pnr up`."""
    from pnr.lifecycle.report import run_report

    assert plan is not None  # an early start ran: the config was checked here
    lost = early.engine_lost
    outcome = UpOutcome.failed(lost or error)
    try:
        return outcome.with_report(*run_report(plan, rdir, None, engine_lost=lost is not None))
    except PnrError:
        return outcome


def _not_again(on_event: Callable[[UpEvent], None], shown: Mapping[str, str]) -> Callable[[UpEvent], None]:
    """`on_event` without what the flow run does again of what the early start showed (`shown`: each chunk's
    phase then): the progress of a chunk shown ready, a chunk shown started waiting again. Failures and watch
    transitions always pass."""

    def again(event: ProgressEvent) -> bool:
        if event.what is not None or event.phase in ("failed", "blocked"):
            return False
        return shown.get(event.chunk) == "ready" or (event.chunk in shown and event.phase == "waiting")

    def forward(event: UpEvent) -> None:
        if not (isinstance(event, ProgressEvent) and again(event)):
            on_event(event)

    return forward


def _checked(request: UpRequest, env: Mapping[str, str] | None) -> Plan:
    """The config's plan, every `${VAR}` it uses resolved and its cpux there (ConfigError otherwise)."""
    from pnr.model import check_config

    plan = check_config(request.config_path, env, env_files=request.env_files or ())
    plan.cpuxs_to_run(request.cpux, request.config_path)
    return plan


def _accepted(plan: Plan, runtime_dir: Path) -> Accepted:
    return Accepted(plan.domain.name, len(plan.chunks), plan.cpux_order, bool(plan.domain.engines), str(runtime_dir))


def conclude(
    plan: Plan,
    request: UpRequest,
    flow_run_id: str | None,
    result: dict[str, object] | None = None,
    error: BaseException | None = None,
    interrupted: bool = False,
) -> UpOutcome:
    """The outcome of a bring-up of `plan` (the flow's `result`, or the `error` it raised), with the domain's
    status table and the run's timeline: the one place that builds it, in this process or in the runner. Should
    the report fail (an engine that stopped answering, a bug), the outcome comes without it: a run's client
    always gets its outcome, and the run's own result or error decides it."""
    from pnr.lifecycle.report import ChunkRows, run_report

    rdir = resolve_runtime_dir(request.runtime_dir)
    if error is not None or result is None:
        outcome = UpOutcome.failed(error or RuntimeError("the run ended without a result"), flow_run_id, interrupted)
        lost = isinstance(error, EngineUnreachable)
        return _with_report(outcome, lambda: run_report(plan, rdir, None, engine_lost=lost))
    cpuxs = result.get("cpuxs")
    rows: Mapping[str, ChunkRows] = cpuxs if isinstance(cpuxs, Mapping) else {}
    outcome = UpOutcome.done(result, flow_run_id)
    return _with_report(outcome, lambda: run_report(plan, rdir, rows, watched=request.watch))


def _with_report(outcome: UpOutcome, report: Callable[[], tuple[DomainStatus | None, RunTimeline]]) -> UpOutcome:
    """`outcome` with the report `report` builds, or as it is (and why on stderr) when building it fails."""
    try:
        return outcome.with_report(*report())
    except Exception as exc:
        print(f"pnr: the run's status table could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
        return outcome


def _here(
    backend: Backend, request: UpRequest, plan: Plan, on_event: Callable[[UpEvent], None], on_ctrl_c: CtrlC
) -> UpOutcome:
    """The flow in this process (PREFECT_API_URL, a throw-away server, or no runner), on the plan checked."""
    if backend.api_url:
        os.environ["PREFECT_API_URL"] = backend.api_url
    from pnr.lifecycle import RunControl, use_control
    from pnr.prefect.flows import bring_up, quiet_prefect_run, start_detached_ephemeral_server

    control = RunControl(checked=plan)
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
        return conclude(plan, request, control.flow_run_id, error=exc, interrupted=stopped)
    return conclude(plan, request, control.flow_run_id, result)


def _drain_to_api(timeout: float = 10.0) -> None:
    """Send the run's queued logs and events while the throw-away server still runs: at exit it may stop first,
    and Prefect then prints "--- Error logging to API ---" on stderr."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout, at_exit=False)


def _on_runner(
    state_dir: Path,
    request: UpRequest,
    rdir: Path,
    header: bool,
    on_event: Callable[[UpEvent], None],
    on_ctrl_c: CtrlC,
    env: Mapping[str, str] | None,
) -> UpOutcome:
    """Let the resident runner execute the run (it checks the config, and sends the header facts when `header`);
    follow it live. Ctrl-C interrupts it there."""
    from pnr.backend.runner import RemoteRun

    remote_request = replace(
        request, config_path=str(Path(request.config_path).resolve()), runtime_dir=str(rdir.resolve())
    )
    remote = RemoteRun(state_dir, remote_request, env or os.environ, shown_as=request.config_path)
    pressed = on_ctrl_c(lambda: remote.interrupt("interrupted (Ctrl-C)"))
    header_seen = not header
    try:
        for raw in remote.events():
            message = from_message(raw)
            if isinstance(message, Accepted):
                if not header_seen:  # as this client names the runtime folder
                    on_event(replace(message, runtime_dir=str(rdir)))
                header_seen = True
            elif not isinstance(message, UpOutcome):
                on_event(message)
    except KeyboardInterrupt:  # pressed twice: the runner's outcome is not awaited
        return _with_report_here(UpOutcome.stopped(), request) if header_seen else UpOutcome.stopped()
    except PnrError as exc:
        return UpOutcome.failed(exc)
    finally:
        remote.close()
    outcome = from_message(remote.outcome) if remote.outcome is not None else None
    if not isinstance(outcome, UpOutcome):
        return UpOutcome(False, 1, "pnr's runner sent no outcome (see `pnr server logs`)")
    if not outcome.ok and pressed and not outcome.interrupted:
        return replace(outcome, interrupted=True)
    return outcome


def _with_report_here(outcome: UpOutcome, request: UpRequest) -> UpOutcome:
    """`outcome` with the status table and timeline read in this process (the runner's never came)."""
    from pnr.lifecycle.report import run_report
    from pnr.model import load_plan

    try:
        plan = load_plan(request.config_path)
        return outcome.with_report(*run_report(plan, resolve_runtime_dir(request.runtime_dir), None))
    except PnrError:
        return outcome
