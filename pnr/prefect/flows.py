"""The Prefect side: a domain compiles to a flow run, each CPUX to a subflow run, each chunk to a task
whose retries wait on its gatekeeper state, and each health check to a sub-task of its chunk's task.

`flows/pnr_flows.py` re-exports `bring_up` and `tear_down` for `prefect.yaml`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict
from uuid import UUID

from prefect import Flow, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, RunInput, State, TaskRun, TaskRunResult
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectConcurrentFuture, wait
from prefect.runtime import flow_run
from prefect.settings import PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, Settings
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, PrivateAttr

from pnr.engines import Engine, EngineSet
from pnr.exceptions import ChunkFailed, EngineUnreachable, RunError
from pnr.lifecycle import (
    WATCH_CANCELLED,
    ChunkBlocked,
    CpuxRun,
    EarlyFacts,
    GateClosed,
    Phase,
    RunControl,
    RunNote,
    Watcher,
    current_control,
    gate_attempts,
    remove_started_by,
    start_preparing,
    tear_down_domain,
)
from pnr.model import SYSTEM_READY, SYSTEM_READY_VALUE, Plan, domain_environ, load_plan
from pnr.prefect.artifacts import RunArtifacts
from pnr.prefect.events import RunEvents, emit_domain
from pnr.prefect.params import pnr_flow
from pnr.processes import detached_popen_options, die_with_parent
from pnr.runtime import SignalStore
from pnr.settings import PnrSettings, get_settings, resolve_runtime_dir, run_settings

# A task's or flow's result (JSON values): Prefect records it, and the runner sends a bring-up's to its client
FlowResult = dict[str, object]


class ProbeSummary(TypedDict):
    """The result of a chunk's `probe` sub-task."""

    ok: bool
    attempts: int
    seconds: float
    last: str


class CpuxSummary(TypedDict):
    """The result of a `pnr-cpux` subflow run (the chunks' table is the bring-up's)."""

    cpux: str
    chunks_ready: int


@dataclass
class DomainRun:
    """One bring-up of a domain: what its CPUX runs share."""

    plan: Plan
    store: SignalStore
    engines: EngineSet  # one Engine per engine the bring-up's chunks use
    control: RunControl
    build: bool
    deadline: float
    gate_slice: float  # the first gate-wait attempt (PNR_GATE_SLICE_SECONDS of whoever asked for the run)
    force_recreate: bool = False
    timeout_seconds: float | None = None  # what the deadline came from, for messages (a CPUX gets what is left)
    early: EarlyFacts | None = None  # the early start this run takes over, if any
    runs: dict[str, CpuxRun] = field(default_factory=dict)  # finished CPUX runs, for the watch
    head: dict[str, CpuxRun] = field(default_factory=dict)  # CPUX runs under way before their subflow run (the first)

    def cpux_run(self, cpux: str, config_path: str, flow_run_id: str) -> CpuxRun:
        """The run of one CPUX of this bring-up (its containers labelled with `flow_run_id`)."""
        return CpuxRun(
            plan=self.plan,
            cpux=cpux,
            store=self.store,
            engine=self.engines,
            config_path=config_path,
            timeout_seconds=max(1.0, self.deadline - time.monotonic()),
            run_timeout=self.timeout_seconds,
            control=self.control,
            flow_run_id=flow_run_id,
            gate_slice=self.gate_slice,
            force_recreate=self.force_recreate,
            early=self.early,
        )


class RunRef(BaseModel):
    """A bring-up as a subflow parameter: the UI shows its domain and id; the live run travels along privately
    (a flow's parameters are API data, so the object itself cannot be one)."""

    domain: str
    run_id: str
    _live: DomainRun | None = PrivateAttr(default=None)

    @classmethod
    def to(cls, run: DomainRun, run_id: str) -> RunRef:
        ref = cls(domain=run.plan.domain.name, run_id=run_id)
        ref._live = run
        return ref

    @property
    def live(self) -> DomainRun:
        if self._live is None:
            raise RuntimeError("a pnr-cpux flow runs only inside its pnr-up flow run")
        return self._live


@task(name="prepare", cache_policy=NO_CACHE, persist_result=False)
def prepare_task(run: CpuxRun, build: bool = False) -> dict[str, str]:
    """Engine, network and images: fails before any container starts (for the first CPUX: that work was under
    way before its subflow run, and the chunks whose gates held at the start may be starting already)."""
    images = run.prepare(build=build)
    get_run_logger().info("images ready: %s", ", ".join(f"{k}={v[7:19]}" for k, v in images.items()))
    return images


# The run names are templates of the parameters: one Task object serves every chunk (`with_options` builds a
# new Task, which reads the function's source again: ~1 ms a chunk, serial in the flow's thread at 500 chunks).
@task(name="probe", task_run_name="{chunk}.probe[{kind}]", cache_policy=NO_CACHE, persist_result=False)
def probe_task(run: CpuxRun, chunk: str, kind: str) -> ProbeSummary:
    """One chunk's health check (a sub-task of the chunk's task); `kind` names it in the UI."""
    logger = get_run_logger()
    result = run.drivers[chunk].probe(log=logger.info, debug=logger.debug)
    return ProbeSummary(ok=result.ok, attempts=result.attempts, seconds=round(result.elapsed, 3), last=result.last)


@task(name="chunk", task_run_name="{chunk}", cache_policy=NO_CACHE, persist_result=False)
def chunk_task(run: CpuxRun, chunk: str) -> dict[str, str]:
    """Wait for the gate (GateClosed → Prefect retry), then start, probe, and await the flowout."""
    logger = get_run_logger()
    gate = run.plan.chunks[chunk].gatekeeper
    if run.progress[chunk].gate_checks == 0 and not run.store.holds(gate):  # what it waits on, in the UI at once
        logger.info("waits on %s", run.unmet_text(gate))
    run.wait_gate(chunk)
    logger.info("gate open: %s", ", ".join(f"{k}={v.tv}" for k, v in gate.items()) or "(no gate)")
    check = run.plan.chunks[chunk].health_check

    def run_probe(name: str) -> ProbeSummary:
        return probe_task(run, name, check.type if check else run.plan.chunks[name].kind)

    try:
        result = run.drivers[chunk].bring_up(run_probe)
    except (ChunkFailed, ChunkBlocked, GateClosed):
        raise
    except Exception as exc:  # a bug or an unexpected engine answer: fail this chunk, loudly, not the process
        run.set_phase(chunk, Phase.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    logger.info("%s: container %s %s; ready", chunk, result["container"], result["action"])
    return result


@task(name="watch", cache_policy=NO_CACHE, persist_result=False)
def watch_task(parent: DomainRun, seconds: float | None = None) -> FlowResult:
    """Watch mode: keep probing the ready chunks; regressions flip signals, dependents follow their policy."""
    logger = get_run_logger()
    watcher = Watcher(
        list(parent.runs.values()),
        seconds=seconds,
        cancelled=_flow_run_cancelled(flow_run.id),
        log=logger.info,
        debug=logger.debug,
    )
    return watcher.run()


def _conclude_cancelled(flow_run_id: str | None) -> None:
    """A run started in-process and cancelled while watching: no worker moves it on from Cancelling, and the
    server refuses the engine's final Completed from there, so the run would hang in Cancelling. Record
    Cancelled, after which the engine's Completed is accepted: the bring-up had succeeded and the watch ended
    on request (its result and log say so); the domain stays up, as after Ctrl-C. (A run a worker or
    `pnr serve` started is cancelled by its runner instead: SIGTERM, the on_cancellation hook.)"""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    if not flow_run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                flow_run_id, Cancelled(message="cancelled while watching; the domain was left up"), force=True
            )
    except Exception as exc:  # the state is a record; the watch already ended cleanly
        get_run_logger().warning("could not record the cancellation: %s", exc)


def _flow_run_cancelled(flow_run_id: str | None) -> Callable[[], bool]:
    """A check whether the flow run was cancelled (UI/CLI), for runs no worker can kill (started in-process)."""

    def cancelled() -> bool:
        if not flow_run_id:
            return False
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(flow_run_id)).state
        except Exception:  # the API is unreachable for a moment: keep watching
            return False
        return state is not None and (state.is_cancelling() or state.is_cancelled())

    return cancelled


@pnr_flow(name="pnr-cpux", persist_result=False, validate_parameters=False)
def cpux_flow(config_path: str, cpux: str, run: RunRef) -> CpuxSummary:
    """One CPUX: every chunk submitted at once (dependencies first); gates decide who starts when."""
    parent = run.live
    # the first CPUX began before this subflow run existed (see _new_run): its containers carry the bring-up's id
    cpux_run = parent.head.pop(cpux, None) or parent.cpux_run(cpux, config_path, str(flow_run.id or run.run_id))
    remaining = max(1.0, parent.deadline - time.monotonic())
    parent.runs[cpux] = cpux_run
    stop = parent.control.on_interrupt(lambda reason: cpux_run.abort(RunError(reason)))
    try:
        prepare_task(cpux_run, parent.build)
        cpux_run.announce()
        _run_chunks(cpux_run, remaining)
    finally:
        stop()
    error = cpux_run.outcome_error()
    if error is not None:
        get_run_logger().error(str(error))
        raise error
    # a count, not the chunks' table: Prefect walks a flow's return value (looking for futures) before the run
    # ends — ~1 s at 500 chunks, before the bring-up may report. `bring_up` reads the table from `parent.runs`.
    return CpuxSummary(cpux=cpux, chunks_ready=len(cpux_run.progress))


def _run_chunks(run: CpuxRun, remaining: float) -> None:
    """Submit every chunk's task (dependency order: producers get worker threads first) and supervise."""
    plan = run.plan
    futures: dict[str, PrefectConcurrentFuture[dict[str, str]]] = {}
    # one Task for every chunk of the CPUX (the retry condition knows its chunk by the task run's name)
    chunk = chunk_task.with_options(
        retries=gate_attempts(run.gate_slice, remaining),  # attempts - 1 retries cover it; one spare
        retry_delay_seconds=0,
        retry_condition_fn=_retry_while_waiting(run),
    )
    context = FlowRunContext.get()
    assert context is not None  # a pnr-cpux flow run
    runner = context.task_runner
    for name in run.names:
        # the producers of its gate signals, recorded as the task run's `wait_for` inputs so the UI draws the
        # edges, but not awaited by Prefect: the gate itself decides, the moment the signal is written
        upstream: set[RunInput] = {
            TaskRunResult(id=futures[d].task_run_id) for d in plan.depends_on[name] if d in futures
        }
        futures[name] = runner.submit(
            chunk,
            {"run": run, "chunk": name},
            # Prefect joins extra inputs onto an existing parameter's inputs: "chunk" carries the edges
            dependencies={"chunk": upstream} if upstream else None,
        )
    finished: list[object] = []  # the tasks that ended, counted as they end: the supervisor's `done` is O(1)

    def ended(future: object) -> None:
        finished.append(future)
        run.phase_changed.set()

    for future in futures.values():
        future.wrapped_future.add_done_callback(ended)
    try:
        run.supervise(done=lambda: len(finished) == len(futures))  # local: no API call
    except KeyboardInterrupt:
        run.abort(RunError("interrupted (Ctrl-C)"))
        raise
    except TerminationSignal:  # cancelled (UI/CLI) or killed: start nothing more, so the hook sees it all
        run.abort(RunError("the flow run was cancelled"))
        raise
    finally:
        lost = isinstance(run.abort_error, EngineUnreachable)
        if lost and isinstance(runner, _ChunkTaskRunner):  # a task may be blocked in a call to the silent engine
            runner.abandon = True  # until its timeout: do not wait for it
        wait(list(futures.values()), timeout=1 if lost else 30)
        for name, future in futures.items():  # a task that died before it could report (a bug): say so
            exc = future.wrapped_future.exception() if future.wrapped_future.done() else None
            if exc is not None and not run.progress[name].phase.final:
                run.set_phase(name, Phase.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        run.close()


class _ChunkTaskRunner(ThreadPoolTaskRunner):  # type: ignore[type-arg]
    """Prefect's thread pool, except that once `abandon` is set (the run was aborted because an engine stopped
    answering) its end does not join the threads: one may sit in a call to that engine until the call's timeout,
    and the run's outcome must not wait for it."""

    abandon = False

    def cancel_all(self) -> None:
        if self.abandon and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        super().cancel_all()


def _retry_while_waiting(run: CpuxRun) -> Callable[[Task[..., object], TaskRun, State], bool]:
    def condition(_task: Task[..., object], task_run: TaskRun, _state: State) -> bool:
        return task_run.name in run.progress and run.should_retry(task_run.name)  # named "{chunk}"

    return condition


def _remove_what_this_run_started(flow: Flow[..., FlowResult], flow_run: FlowRun, state: State) -> None:
    """on_cancellation / on_crashed of `bring_up`: a cancelled or crashed bring-up leaves no half state.

    The containers this run started (label io.pnr.flow-run-id = this run or one of its CPUX subflow runs) are
    removed; when none of the domain's containers remain, its network and runtime values go too, as `pnr down`.
    Containers an earlier run started (reused by this one) are left and named, with the `pnr down` command."""
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    params = flow_run.parameters or {}
    config = params.get("config_path", "CONFIG")
    try:
        plan = load_plan(config)
        engines = Engine().engine_set(plan)
        ids = (
            {str(flow_run.id)}
            | _subflow_run_ids(flow_run.id)
            | ({params["early_start"]} if params.get("early_start") else set())
        )
        ours, rest = remove_started_by(plan, engines, ids)  # on every engine that answers
        if not rest:
            tear_down_domain(plan, engines, resolve_runtime_dir(params.get("runtime_dir")))
        else:
            logger.warning(
                "left running %s (started by an earlier run); `pnr down %s` removes them", ", ".join(rest), config
            )
        logger.info(
            "%s: removed %d container(s) this run started: %s",
            state.name,
            len(ours),
            ", ".join(ours) or "-",
        )
        emit_domain(plan.domain.name, "up.cancelled", {"state": state.name, "removed": ours, "left": rest})
    except Exception as exc:  # never let a hook hide the run's own outcome
        logger.error("could not remove what this run started (%s); run `pnr down %s`", exc, config)


def _subflow_run_ids(parent_id: UUID) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )
    return {str(r.id) for r in runs}


@pnr_flow(
    name="pnr-up",
    persist_result=False,
    on_cancellation=[_remove_what_this_run_started],
    on_crashed=[_remove_what_this_run_started],
)
def bring_up(
    config_path: str,
    cpux: str | None = None,
    runtime_dir: str | None = None,
    timeout_seconds: float | None = None,
    build: bool = False,
    force_recreate: bool = False,
    watch: bool = False,
    watch_seconds: float | None = None,
    env_files: list[str] | None = None,
    early_start: str | None = None,
) -> FlowResult:
    """Bring a domain up: each CPUX (or only `cpux`) as a subflow run, in signal-dependency order.

    `${VAR}` in container env comes from the environment, over `env_files` (as `pnr up --env-file`), over the
    domain's own env_files.

    With `watch`, the run then keeps probing the ready chunks (the `watch` task, see `pnr.lifecycle.watch`) until
    Ctrl-C, cancellation, or `watch_seconds`; the result then has a "watch" entry. `timeout_seconds` bounds
    the bring-up (default: the PNR_TIMEOUT_SECONDS setting, 300). A caller in this process observes and
    interrupts the run through the `RunControl` it hands over with `pnr.lifecycle.use_control`. `early_start`:
    the id of the bring-up `pnr up` began while pnr's server started (`pnr.lifecycle.early`); this run takes its
    containers over as its own."""
    control = current_control()
    plan = control.plan_of(config_path) or load_plan(config_path)  # planned once: by the caller that checked it
    settings = run_settings(control.environ)
    timeout_seconds = timeout_seconds or settings.timeout_seconds
    if env_files:  # the domain's own env_files are read under these by each chunk (see domain_environ)
        control.environ = domain_environ(plan.domain, config_path, control.environ, env_files)
    names = plan.cpuxs_to_run(cpux, config_path)
    run = _new_run(
        plan, names, config_path, runtime_dir, control, build, force_recreate, timeout_seconds, settings, early_start
    )
    store = run.store
    ref = RunRef.to(run, str(flow_run.id or uuid.uuid4()))
    artifacts = RunArtifacts(plan, names, store, control)
    events = RunEvents(plan, names, store, control, config_path, settings.chunk_events)
    results: FlowResult = {}
    error: BaseException | None = None
    artifacts.start()
    events.start()
    try:
        try:
            with store.deferred_fsync():  # one fsync of the signal file at the end, not one per write
                _run_cpuxs(ref, names, results, config_path)
            if not watch:  # the outcome is known: a caller waiting for it need not wait for the bookkeeping below
                control.publish(
                    RunNote(
                        plan.domain.name,
                        "up.outcome",
                        "every chunk is ready",
                        {"result": _result(plan, results, store)},
                    )
                )
        except BaseException as exc:
            error = exc
            raise
        finally:
            store.refresh()
            artifacts.finish(error, run.runs)
            events.finish(error)
        watched = _watch_after(run, watch_seconds) if watch else {}  # after the outcome is recorded
    finally:
        events.close()
    return {**watched, **_result(plan, results, store)}


def _new_run(
    plan: Plan,
    names: list[str],
    config_path: str,
    runtime_dir: str | None,
    control: RunControl,
    build: bool,
    force_recreate: bool,
    timeout_seconds: float,
    settings: PnrSettings,
    early_start: str | None = None,
) -> DomainRun:
    """The bring-up's state: its signal store started, the engines of `names`, the deadline; the first CPUX
    already under way while Prefect creates its subflow run — the engine work (ping, images, network; begun by
    the runner before this flow run existed, `control.ahead`, when it ran the same bring-up), then the
    containers of the chunks whose gates hold at the start (`CpuxRun.head_start`), labelled with this flow run's
    id, so that a cancelled or crashed bring-up removes them as its own."""
    control.flow_run_id = str(flow_run.id) if flow_run.id else None
    store = SignalStore(resolve_runtime_dir(runtime_dir), plan.domain.name, scope=plan.signals_produced_in(names))
    early = EarlyFacts.read(store.runtime_dir, plan.domain.name, early_start) if early_start else None
    store.start_run({SYSTEM_READY: SYSTEM_READY_VALUE})
    ahead = control.ahead.take(names[0], build, force_recreate) if control.ahead is not None else None
    control.ahead = None
    engines = ahead.engines if ahead else Engine().engine_set(plan, names)  # pinged before anything starts
    run = DomainRun(
        plan,
        store,
        engines,
        control,
        build,
        time.monotonic() + timeout_seconds,
        settings.gate_slice_seconds,
        force_recreate=force_recreate,
        timeout_seconds=timeout_seconds,
        early=early,
    )
    preparing = (
        ahead.preparing
        if ahead
        else start_preparing(plan, names[0], engines, config_path, build, take_over=force_recreate)
    )
    head = run.cpux_run(names[0], config_path, str(flow_run.id or uuid.uuid4()))
    head.head_start(build, preparing)
    run.head[names[0]] = head
    _label_flow_run(plan.domain.name)  # ~6 ms of API call, while the engine work above runs
    return run


def _ready_note(plan: Plan, results: FlowResult, store: SignalStore) -> RunNote:
    """The note that tells a waiting caller the bring-up's outcome: every chunk is ready."""
    return RunNote(plan.domain.name, "up.outcome", "every chunk is ready", {"result": _result(plan, results, store)})


def _watch_after(run: DomainRun, watch_seconds: float | None) -> FlowResult:
    """The watch of a bring-up that is ready (pnr.domain.up.completed already sent): {"watch": its summary}."""
    watched = watch_task.with_options(task_run_name=f"{run.plan.domain.name}.watch")(run, watch_seconds)
    run.store.refresh()
    if watched["ended"] == WATCH_CANCELLED:
        _conclude_cancelled(flow_run.id)
    return {"watch": watched}


def _run_cpuxs(ref: RunRef, names: list[str], results: FlowResult, config_path: str) -> None:
    """Each CPUX of the bring-up `ref` carries as a subflow run, in order; `results` gets each one's chunk table."""
    run = ref.live
    for name in names:
        workers = len(run.plan.chunks_of(name)) + 2  # every chunk may wait at once: one thread each, no deadlock
        cpux_flow.with_options(
            flow_run_name=f"{run.plan.domain.name}.{name}",
            task_runner=_ChunkTaskRunner(max_workers=workers),
        )(config_path, name, ref)
        results[name] = run.runs[name].results()


def run_source(run: FlowRun) -> str:
    """What started a flow run: `schedule` (a deployment's schedule), `automation`, `deployment` (a deployment
    run by hand, from the UI, `prefect deployment run` or `pnr serve`), or `cli` (`pnr up`/`pnr down`, or a call
    of the flow in Python)."""
    if getattr(run, "deployment_id", None) is None:
        return "cli"
    if getattr(run, "auto_scheduled", False):
        return "schedule"
    created_by = getattr(run, "created_by", None)
    if created_by is not None and str(getattr(created_by, "type", "")).upper() == "AUTOMATION":
        return "automation"
    return "deployment"


def run_labels(domain: str, run: FlowRun) -> tuple[str, list[str]]:
    """The name and tags pnr gives a bring-up or tear-down flow run: `dev_stack · cli`, and `pnr`,
    `domain:dev_stack` and the source next to the tags it has (a deployment's own, but its `domain:` tag only if
    the run's config is of that domain)."""
    source = run_source(run)
    kept = {t for t in getattr(run, "tags", None) or [] if not t.startswith("domain:")}  # a deployment's, maybe
    return f"{domain} · {source}", sorted({*kept, "pnr", f"domain:{domain}", source})  # for another config_path


def _label_flow_run(domain: str) -> None:
    """Name and tag this flow run after its domain and source (one API call), so the runs page of the UI reads
    `pnr-up > dev_stack · cli` and filters by `domain:dev_stack`. A failure only costs the label."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    run, client = ctx.flow_run, ctx.client
    name, tags = run_labels(domain, run)
    try:
        if isinstance(client, SyncPrefectClient):
            client.update_flow_run(run.id, name=name, tags=tags)
        else:
            with get_client(sync_client=True) as sync:
                sync.update_flow_run(run.id, name=name, tags=tags)
        run.name, run.tags = name, tags
    except Exception as exc:  # a label, never the run's outcome
        get_run_logger().warning("could not name the flow run %r: %s", name, exc)


def _result(plan: Plan, results: FlowResult, store: SignalStore) -> FlowResult:
    return {
        "domain": plan.domain.name,
        "cpuxs": results,
        "signals": {k: v.model_dump() for k, v in sorted(store.snapshot().items())},
    }


@pnr_flow(name="pnr-down", persist_result=False)
def tear_down(
    config_path: str,
    runtime_dir: str | None = None,
    volumes: bool = False,
    stop_timeout_seconds: float | None = None,
    force: bool = False,
) -> dict[str, str | list[str]]:
    """Remove exactly what pnr created for the domain (by labels), in reverse dependency order.
    `stop_timeout_seconds`: each container's grace after its stop signal, instead of its stop_grace_period_seconds.
    `force`: remove the domain even when another config file (of the same domain name) brought it up."""
    if stop_timeout_seconds is not None and stop_timeout_seconds < 0:
        raise ValueError(f"stop_timeout_seconds: {stop_timeout_seconds:g} is negative; give 0 or more seconds")
    plan = load_plan(config_path)
    _label_flow_run(plan.domain.name)
    report = tear_down_domain(
        plan,
        Engine(),
        resolve_runtime_dir(runtime_dir),
        volumes=volumes,
        stop_timeout=stop_timeout_seconds,
        force=force,
    )
    get_run_logger().info("removed %d container(s), %d network(s)", len(report["containers"]), len(report["networks"]))
    return report


@contextmanager
def quiet_prefect_run(csrf: bool = True) -> Iterator[None]:
    """Run flows in-process without paying the flow heartbeat (unless PNR_HEARTBEAT=1). `csrf=False`: the API is
    known not to enforce CSRF (pnr's runner asks its server once), so Prefect's clients do not ask each time for a
    token (one request per client: two or three before a bring-up's first container starts)."""
    heartbeat = get_settings().heartbeat
    if heartbeat and csrf:
        yield
        return
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    with SettingsContext(profile=context.profile, settings=_quiet_settings(context.settings, heartbeat, csrf)):
        yield


_QUIET_SETTINGS: list[tuple[Settings, bool, bool, Settings]] = []  # (settings, heartbeat, csrf, the copy), newest last


def _quiet_settings(settings: Settings, heartbeat: bool, csrf: bool) -> Settings:
    """`settings` with the flow heartbeat off (unless `heartbeat`) and the clients' CSRF support off (unless `csrf`),
    made once per settings object: building a Prefect `Settings` reads the environment and the profile files again
    (~0.1 s of CPU), and the runner's every run asked for the same copy. Nothing changes a settings object once
    made (a change is a new one); a few recent ones are kept."""
    for seen, seen_heartbeat, seen_csrf, copy in _QUIET_SETTINGS:
        if seen is settings and seen_heartbeat == heartbeat and seen_csrf == csrf:
            return copy
    updates: dict[Any, Any] = {}
    if not heartbeat:
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    if not csrf:
        updates[PREFECT_CLIENT_CSRF_SUPPORT_ENABLED] = False
    copy = settings.copy_with_update(updates=updates)
    _QUIET_SETTINGS[:] = [*_QUIET_SETTINGS[-3:], (settings, heartbeat, csrf, copy)]
    return copy


def start_detached_ephemeral_server() -> None:
    """Start Prefect's temporary server (when no PREFECT_API_URL is set) in its own session, so a Ctrl-C in the
    terminal reaches pnr — which then stops cleanly and records the outcome — and not the server too."""
    import subprocess
    import types

    from prefect.server.api import server as server_module
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    server = server_module.SubprocessASGIServer()
    if server.running:
        return
    detached = types.SimpleNamespace(**{**vars(subprocess), "Popen": _popen_new_session})
    original = server_module.subprocess  # type: ignore[attr-defined]
    server_module.subprocess = detached  # type: ignore[attr-defined,assignment]
    try:
        server.start()
    finally:
        server_module.subprocess = original  # type: ignore[attr-defined]


def _popen_new_session(*args: Any, **kwargs: Any) -> Any:
    import subprocess

    for key, value in detached_popen_options().items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("preexec_fn", die_with_parent())  # SIGTERM when pnr dies, even by SIGKILL
    return subprocess.Popen(*args, **kwargs)
