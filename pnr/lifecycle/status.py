"""A domain's status as a type: what `pnr status` shows, what a bring-up's outcome carries for its table, and
what `status --json` prints (`DomainStatus.to_json`, the documented shape). Read from the runtime files and the
engines; touches nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pnr.engines import LABEL_CHUNK, ContainerState, Engine, EngineSet
from pnr.model import Plan, PnR
from pnr.runtime import ChunkStateFile, read_state

ChunkStatusName = Literal["ready", "waiting", "executing", "completed", "failed", "stopped", "unknown"]


@dataclass(frozen=True)
class ChunkStatus:
    """One chunk: `status` as documented (`ready` = not started yet), the engine it runs on, its container,
    the phase its last run recorded, and a detail line."""

    status: ChunkStatusName
    engine: str
    container: str | None
    container_id: str | None
    cpux: str
    phase: str | None
    detail: str | None


@dataclass(frozen=True)
class EngineStatus:
    host: str | None
    address: str | None
    reachable: bool
    error: str | None


@dataclass(frozen=True)
class DomainStatus:
    domain: str
    signals: dict[str, PnR]
    chunks: dict[str, ChunkStatus]
    runtime_dir: str
    stale: dict[str, str] = field(default_factory=dict)  # signal → why its value may no longer hold
    problems: dict[str, str] = field(default_factory=dict)  # runtime file → why it was ignored
    engines: dict[str, EngineStatus] = field(default_factory=dict)

    @property
    def every_engine_answered(self) -> bool:
        return bool(self.engines) and all(e.reachable for e in self.engines.values())

    def to_json(self) -> dict[str, Any]:
        """The shape `pnr status --json` prints."""
        return {
            "domain": self.domain,
            "signals": {name: value.model_dump() for name, value in sorted(self.signals.items())},
            "stale": dict(self.stale),
            "chunks": {name: asdict(c) for name, c in self.chunks.items()},
            "runtime_dir": self.runtime_dir,
            "problems": dict(self.problems),
            "engine": self.every_engine_answered,
            "engines": {name: asdict(e) for name, e in self.engines.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DomainStatus:
        """The inverse of `to_json` (a status that crossed a process boundary as JSON)."""
        return cls(
            domain=str(data["domain"]),
            signals={name: PnR.model_validate(v) for name, v in data.get("signals", {}).items()},
            chunks={name: ChunkStatus(**c) for name, c in data.get("chunks", {}).items()},
            runtime_dir=str(data.get("runtime_dir", "")),
            stale=dict(data.get("stale", {})),
            problems=dict(data.get("problems", {})),
            engines={name: EngineStatus(**e) for name, e in data.get("engines", {}).items()},
        )


def domain_status(
    plan: Plan,
    engine: Engine | EngineSet | None,
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
    engines = EngineSet.coerce(engine, plan) if engine is not None else None
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
        phase = rec.get("phase")
        ename = engines.name_of(chunk) if engines is not None else plan.domain.engine_of(chunk)
        flowout_holds = all(state.get(s) is not None and state[s].tv == p.tv for s, p in chunk.flowout.items())
        status: ChunkStatusName
        if ename in lost:
            status = "unknown"
        elif phase == "failed":
            status = "failed"
        elif cont is not None and not cont.running and not (chunk.kind == "job" and flowout_holds):
            status = "stopped"  # (a job that ran to its end and produced its flowout is completed)
        elif cont is not None and flowout_holds and phase in (None, "ready", "blocked"):
            status = "completed"
        elif cont is not None:
            status = "executing"
        elif phase == "waiting" and run_alive:
            status = "waiting"
        else:
            status = "ready"  # not started (the seed's initial status)
        detail = rec.get("detail") or None
        if ename in lost and engines is not None:
            detail = f"{engines.describe(ename)} does not answer; last recorded phase: {phase or 'none'}"
        elif cont is None and engine is not None and phase in ("starting", "probing", "ready") and not run_alive:
            detail = f"container {chunk.container.name} is gone (removed outside pnr?); `pnr up` recreates it"
        elif status == "stopped" and cont is not None and phase != "failed":
            detail = f"container {cont.name} is {cont.status} (stopped outside pnr?); `pnr up` starts it again"
        chunks[name] = ChunkStatus(
            status,
            ename,
            cont.name if cont else None,
            cont.id if cont else None,
            plan.refs[name].cpux,
            phase,
            detail,
        )
    return DomainStatus(
        domain=domain,
        signals=dict(state),
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
