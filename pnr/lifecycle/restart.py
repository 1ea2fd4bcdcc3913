"""`pnr restart CONFIG CHUNK`: restart one chunk's container and bring the domain back to ready, by the watch's
own state machine (`pnr.lifecycle.watch.Watcher`) rather than a second one.

    1. the chunk must have a container pnr labelled for the domain (else: `pnr up` first); a job chunk is refused
    2. a live run of the domain (`pnr up --watch`, or a bring-up in progress: the chunk-state file's pid is alive)
       keeps that run in charge: the container is only restarted, and that run's watch reacts
    3. otherwise: a Watcher over every chunk that is ready now (container running, flowout holding), the chunk's
       restart requested from it (`Watcher.request_restart`): its signals go N (`lost_values(container_gone=True)`),
       it stops with its stop signal and grace period, its dependents follow their on_dependency_lost policy
       (ignore / stop / restart), it starts and is probed until ready (`recovered_values()`), and the dependents
       come back. Ends when every watched chunk is ready again (`Watcher.settled`), or at the timeout.

No Prefect: a restart is quick, local work on containers that are already there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pnr.engines import LABEL_CHUNK, LABEL_DOMAIN, LABEL_MANAGED, EngineSet
from pnr.engines.engineset import EngineSource
from pnr.engines.protocol import ContainerEngine, ContainerState
from pnr.exceptions import ConfigError, ConfigIssue, RunError
from pnr.lifecycle.control import RunControl
from pnr.lifecycle.cpux import CpuxRun, domain_runs
from pnr.lifecycle.state import Phase
from pnr.lifecycle.watch import Watcher
from pnr.model import DesignChunk, Plan
from pnr.runtime import ChunkStateFile, SignalStore

TIMES = ("created_at", "started_at", "first_probe_at", "ready_at")
LIVE_NOTICE_SECONDS = 30.0  # how long a restarted container stays stopped until a live watch has seen it lost


@dataclass
class RestartResult:
    """What a restart did: `mode` "watched" (this process brought everything back) or "live-run" (another run of
    the domain is in charge, pid `live_pid`); `ok` when every watched chunk is ready again."""

    chunk: str
    container: str
    mode: str
    ok: bool
    seconds: float
    message: str = ""
    live_pid: int | None = None
    watched: list[str] = field(default_factory=list)
    not_watched: list[str] = field(default_factory=list)  # not ready before the restart: left as they were
    events: list[dict[str, Any]] = field(default_factory=list)


def restart_chunk(
    plan: Plan,
    engine: EngineSource,
    runtime_dir: Path,
    chunk: str,
    *,
    timeout_seconds: float,
    config_path: str,
    control: RunControl | None = None,
    log: Callable[[str], None] | None = None,
) -> RestartResult:
    """Restart `chunk`'s container and wait until every ready chunk of the domain is ready again (see the module
    docstring). ConfigError: no such chunk, or a job chunk. RunError: the chunk has no container. EngineError:
    an engine does not answer."""
    spec = _service_chunk(plan, chunk)
    engines = engine.engine_set(plan)
    own = engines.of(spec)
    container = _owned_container(plan, own, chunk, config_path)
    started = time.monotonic()
    state_file = ChunkStateFile(runtime_dir, plan.domain.name)
    if state_file.run_alive():  # that run (a watch) owns the signals: it sees the restart and reacts
        return _under_live_run(plan, own, chunk, container, state_file, started + timeout_seconds, control)
    control = control or RunControl()
    runs = _runs(plan, engines, runtime_dir, chunk, timeout_seconds, config_path, control, state_file)
    watched_names = {n for r in runs for n, p in r.progress.items() if p.phase == Phase.READY}
    watcher = Watcher(runs, log=log or (lambda _m: None))
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(watcher.run()), name="pnr-restart-watch", daemon=True)
    thread.start()
    watcher.request_restart(chunk)
    deadline = started + timeout_seconds
    try:
        while not watcher.settled() and time.monotonic() < deadline and not control.interrupted:
            time.sleep(0.1)
        settled = watcher.settled()
        unsettled = watcher.unsettled()
        watcher.stop("every chunk is ready again" if settled else "gave up")
    finally:
        watcher.stop("interrupted")
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    order = [n for c in plan.cpux_order for n in plan.chunks_of(c)]
    result = RestartResult(
        chunk,
        container,
        "watched",
        settled,
        elapsed,
        watched=[n for n in order if n in watched_names],
        not_watched=[n for n in order if n not in watched_names],
        events=list(outcome.get("events", [])),
    )
    if not settled:
        why = "interrupted" if control.interrupted else f"not ready again within {timeout_seconds:g}s"
        lines = [f"restart of {chunk}: {why}:"] + [f"  {n}: {text}" for n, text in unsettled.items()]
        result.message = "\n".join(lines)
    return result


def _under_live_run(
    plan: Plan,
    engine: ContainerEngine,
    chunk: str,
    container: str,
    state_file: ChunkStateFile,
    deadline: float,
    control: RunControl | None,
) -> RestartResult:
    """Another process runs the domain (its pid is in the chunk-state file): restart the container only, and let
    that run's watch do the rest. The container stays stopped until the watch has seen it lost and its direct
    dependents with a stop / restart policy have reacted (bounded), so a quick restart cannot slip between the
    watch's probes; then this waits, reading the chunk-state file the watch keeps, until every chunk that was
    ready is ready again."""
    started = time.monotonic()
    recorded_pid = state_file.read().get("pid")
    pid = recorded_pid if isinstance(recorded_pid, int) else None
    ready_before = [n for n, c in state_file.chunks().items() if isinstance(c, dict) and c.get("phase") == "ready"]
    result = RestartResult(chunk, container, "live-run", False, 0.0, live_pid=pid, watched=ready_before)

    def phases() -> dict[str, str]:
        return {n: str(c.get("phase")) for n, c in state_file.chunks().items() if isinstance(c, dict)}

    def wait(condition: Callable[[], bool], until: float) -> bool:
        return _wait_on_live_run(condition, until, state_file, control)

    reacting = [
        n
        for n in ready_before
        if chunk in plan.depends_on.get(n, []) and plan.domain.dependency_policy(plan.chunks[n]) != "ignore"
    ]
    engine.stop(container)
    noticed = wait(
        lambda: (now := phases()).get(chunk) != "ready" and all(now.get(n) != "ready" for n in reacting),
        min(deadline, time.monotonic() + LIVE_NOTICE_SECONDS),
    )
    engine.start(container)
    result.ok = wait(lambda: all(phases().get(n) == "ready" for n in ready_before), deadline)
    result.seconds = time.monotonic() - started
    if not result.ok:
        result.message = _live_run_late(chunk, pid, phases(), ready_before, state_file, control, noticed)
    return result


def _wait_on_live_run(
    condition: Callable[[], bool], until: float, state_file: ChunkStateFile, control: RunControl | None
) -> bool:
    """Poll `condition` until `until`, while the live run lives and no interrupt came: whether it held."""
    while time.monotonic() < until and not (control is not None and control.interrupted):
        if condition():
            return True
        if not state_file.run_alive():
            return False
        time.sleep(0.1)
    return bool(condition())


def _live_run_late(
    chunk: str,
    pid: int | None,
    now: dict[str, str],
    ready_before: list[str],
    state_file: ChunkStateFile,
    control: RunControl | None,
    noticed: bool,
) -> str:
    """Why a restart under a live run did not settle, naming each chunk not ready again."""
    late = {n: now.get(n, "?") for n in ready_before if now.get(n) != "ready"}
    why = (
        "the live run ended"
        if not state_file.run_alive()
        else "interrupted"
        if control is not None and control.interrupted
        else "not ready again in time"
    )
    message = f"restart of {chunk} under the live run (pid {pid}): {why}; " + ", ".join(
        f"{n} is {p}" for n, p in late.items()
    )
    if not noticed:
        message += f" (it never reported {chunk} lost: is it a `pnr up --watch`?)"
    return message


def _service_chunk(plan: Plan, chunk: str) -> DesignChunk:
    if chunk not in plan.chunks:
        have = ", ".join(plan.chunks)
        raise ConfigError(
            plan.source, [ConfigIssue("", f"no chunk named {chunk!r} in domain {plan.domain.name} (it has: {have})")]
        )
    spec = plan.chunks[chunk]
    if spec.kind == "job":
        raise ConfigError(
            plan.source,
            [
                ConfigIssue(
                    plan.refs[chunk].path, f"{chunk} is a job chunk: `pnr up` runs it again; restart is for services"
                )
            ],
        )
    return spec


def _owned_container(plan: Plan, engine: ContainerEngine, chunk: str, config_path: str) -> str:
    name = plan.chunks[chunk].container.name
    state = engine.inspect(name)
    if state is None or state.labels.get(LABEL_CHUNK) != chunk or not _ours(state, plan.domain.name):
        raise RunError(
            f"{chunk}: no container of domain {plan.domain.name} to restart ({name} "
            f"{'does not exist' if state is None else 'was not created by pnr for this domain'}); "
            f"`pnr up {config_path}` brings it up"
        )
    return name


def _ours(state: ContainerState, domain: str) -> bool:
    return bool(state.labels.get(LABEL_DOMAIN) == domain and state.labels.get(LABEL_MANAGED) == "true")


def _runs(
    plan: Plan,
    engines: EngineSet,
    runtime_dir: Path,
    chunk: str,
    timeout: float,
    config_path: str,
    control: RunControl,
    state_file: ChunkStateFile,
) -> list[CpuxRun]:
    """One CpuxRun per CPUX over the domain's current state: chunks whose container runs and whose flowout holds
    are ready (the watch takes them), the restarted chunk too; the others keep the phase last recorded."""
    store = SignalStore(runtime_dir, plan.domain.name)
    store.refresh()
    recorded = state_file.chunks()
    flow_run_id = str(state_file.read().get("flow_run_id") or "local")
    containers: dict[str, Any] = {}
    for _name, e in engines.items():
        with contextlib.suppress(Exception):  # an engine that does not answer: its chunks are not ready
            for c in e.owned_containers(plan.domain.name):
                containers.setdefault(c.labels.get(LABEL_CHUNK, ""), c)
    runs = domain_runs(
        plan, store, engines, config_path, timeout_seconds=timeout, control=control, flow_run_id=flow_run_id
    )
    for run in runs:
        for name, prog in run.progress.items():
            rec = recorded.get(name, {})
            cont = containers.get(name)
            for key in TIMES:
                if isinstance(rec.get(key), int | float):
                    setattr(prog, key, float(rec[key]))
            with contextlib.suppress(ValueError):
                prog.phase = Phase(rec.get("phase") or "waiting")
            prog.detail = str(rec.get("detail") or "")
            if cont is not None:
                prog.container, prog.container_id = cont.name, cont.id
            ready = cont is not None and cont.running and store.holds(plan.chunks[name].flowout)
            if name == chunk or (ready and plan.chunks[name].kind == "service"):
                prog.phase = Phase.READY
        run.recount()
    return runs
