"""A domain's status (`pnr.records.DomainStatus`: what `pnr status` shows and `status --json` prints), read from
the runtime files and the engines; touches nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pnr.engines import LABEL_CHUNK, ContainerState, EngineSet
from pnr.engines.engineset import EngineSource
from pnr.model import DesignChunk, Plan, PnR
from pnr.records import ChunkStatus, ChunkStatusName, DomainStatus, EngineStatus, SignalValue
from pnr.runtime import ChunkStateFile, read_state


def domain_status(
    plan: Plan,
    engine: EngineSource | None,
    runtime_dir: Path,
    known: Mapping[str | None, ContainerState] | None = None,
) -> DomainStatus:
    """Truth values, chunk states and containers, each chunk with its engine; `engine=None` when no engine
    answers. A chunk whose engine does not answer is `unknown` (the `engines` entry says why). `known`: the
    containers a bring-up that has just made every chunk ready knows, by chunk; when they cover the whole
    domain no engine is asked (at 500 chunks, listing them took ~0.6 s between the outcome and the report)."""
    domain = plan.domain.name
    state, problems = read_state(runtime_dir, domain)
    state_file = ChunkStateFile(runtime_dir, domain)
    recorded = state_file.chunks()
    run_alive = state_file.run_alive()
    engines = engine.engine_set(plan) if engine is not None else None
    if known is not None and engines is not None and known.keys() >= plan.chunks.keys():
        lost: dict[str, str] = {}
        containers: dict[str | None, ContainerState] = dict(known)
    else:
        lost = engines.unreachable() if engines is not None else {}
        containers = _owned_by_chunk(engines, lost, domain)
    chunks: dict[str, ChunkStatus] = {}
    for name, chunk in plan.chunks.items():
        rec = recorded.get(name, {})
        cont = containers.get(name)
        ename = engines.name_of(chunk) if engines is not None else plan.domain.engine_of(chunk)
        flowout_holds = all(state.get(s) is not None and state[s].tv == p.tv for s, p in chunk.flowout.items())
        status = _status_of(chunk, rec.get("phase"), cont, flowout_holds, run_alive, ename in lost)
        detail = rec.get("detail") or None
        if ename in lost and engines is not None:
            detail = f"{engines.describe(ename)} does not answer; last recorded phase: {rec.get('phase') or 'none'}"
        elif engine is not None and not run_alive and cont is None and rec.get("phase") in _STARTED:
            detail = f"container {chunk.container.name} is gone (removed outside pnr?); `pnr up` recreates it"
        elif status == "stopped" and cont is not None and rec.get("phase") != "failed":
            detail = f"container {cont.name} is {cont.status} (stopped outside pnr?); `pnr up` starts it again"
        cpux, phase = plan.refs[name].cpux, rec.get("phase")
        ids = (cont.name, cont.id) if cont is not None else (None, None)
        chunks[name] = ChunkStatus(status, ename, ids[0], ids[1], cpux, phase, detail)
    return DomainStatus(
        domain=domain,
        signals={name: SignalValue(v.prompt, list(v.response), v.tv) for name, v in state.items()},
        chunks=chunks,
        runtime_dir=str(runtime_dir),
        stale=_stale_signals(plan, state, chunks),
        problems=problems,
        engines={
            ename: EngineStatus(
                getattr(e, "host", None) or None, getattr(e, "address", None), ename not in lost, lost.get(ename)
            )
            for ename, e in (engines.items() if engines is not None else [])
        },
    )


_STARTED = ("starting", "probing", "ready")


def _status_of(
    chunk: DesignChunk,
    phase: str | None,
    cont: ContainerState | None,
    flowout_holds: bool,
    run_alive: bool,
    engine_lost: bool,
) -> ChunkStatusName:
    """A chunk's documented status from its last recorded phase, its container and its flowout."""
    if engine_lost:
        return "unknown"
    if phase == "failed":
        return "failed"
    if cont is not None and not cont.running and not (chunk.kind == "job" and flowout_holds):
        return "stopped"  # (a job that ran to its end and produced its flowout is completed)
    if cont is not None and flowout_holds and phase in (None, "ready", "blocked"):
        return "completed"
    if cont is not None:
        return "executing"
    if phase == "waiting" and run_alive:
        return "waiting"
    return "ready"  # not started (PnR's name: ready to be started)


def _stale_signals(plan: Plan, state: Mapping[str, PnR], chunks: dict[str, ChunkStatus]) -> dict[str, str]:
    """Signals whose producer's container stopped or went away since it wrote them: the value stands (only a
    watch or the next `pnr up` changes it), but a reader should know it may no longer be true."""
    stale: dict[str, str] = {}
    for signal in state:
        for producer in plan.producers.get(signal, []):
            c = chunks.get(producer)
            if c is None:
                continue
            if c.status == "stopped":
                stale[signal] = f"{producer} stopped since it wrote it"
            elif c.container is None and c.status != "unknown" and c.phase in ("probing", "ready"):
                stale[signal] = f"{producer}'s container is gone"
    return stale


def _owned_by_chunk(engines: EngineSet | None, lost: dict[str, str], domain: str) -> dict[str | None, ContainerState]:
    """The domain's containers on every engine that answers, by chunk."""
    containers: dict[str | None, ContainerState] = {}
    for ename, e in engines.items() if engines is not None else []:
        if ename not in lost:
            for c in e.owned_containers(domain):
                containers.setdefault(c.labels.get(LABEL_CHUNK), c)
    return containers
