"""What one CPUX run knows while it runs: each chunk's phase, the run's deadline and abort reason, and the
`RunControl` through which it is observed and stopped. Shared by the scheduler (`cpux`), the chunk drivers
(`chunk`) and the watch (`watch`); nothing here starts a container or knows Prefect."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypedDict

from pnr.engines import LABEL_RUN
from pnr.engines.engineset import EngineSource
from pnr.engines.protocol import ContainerEngine, ContainerState
from pnr.exceptions import EngineUnreachable
from pnr.lifecycle.control import RunControl
from pnr.model import Plan, PnR
from pnr.records import ProgressEvent
from pnr.runtime import ChunkStateFile, SignalStore

PERSIST_EVERY = 0.25  # seconds between writes of the chunk-state file during a run of up to 100 chunks


def persist_interval(chunks: int) -> float:
    """Seconds between writes of the chunk-state file while a run of `chunks` chunks is on: PERSIST_EVERY up to
    100 chunks, then growing with the domain (each write renders and writes every chunk's state), at most 1.5 s.
    `pnr status` of a running 500-chunk domain is then at most 1.25 s behind."""
    return min(1.5, max(PERSIST_EVERY, chunks / 400))


class Phase(StrEnum):
    WAITING = "waiting"
    STARTING = "starting"
    PROBING = "probing"
    READY = "ready"
    FAILED = "failed"
    BLOCKED = "blocked"  # aborted while waiting: its gate can never open, or the run timed out
    LOST = "lost"  # watch mode: was ready, its probe regressed (see pnr.lifecycle.watch)

    @property
    def active(self) -> bool:
        return self in (Phase.STARTING, Phase.PROBING)

    @property
    def final(self) -> bool:
        return self in (Phase.READY, Phase.FAILED, Phase.BLOCKED)


@dataclass
class ChunkProgress:
    name: str
    cpux: str
    phase: Phase = Phase.WAITING
    container: str | None = None
    container_id: str | None = None
    action: str | None = None  # created | reused | recreated
    detail: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    first_probe_at: float | None = None
    ready_at: float | None = None
    gate_checks: int = 0

    def to_json(self) -> dict[str, object]:
        data = dict(self.__dict__)  # every field is a plain value: no deep copy (`asdict`: ~20x slower)
        data["phase"] = self.phase.value
        return data


class ChunkResult(TypedDict):
    """A chunk in a bring-up's result (`CpuxRun.results`): its last phase, its container and its times."""

    phase: str
    container: str | None
    container_id: str | None
    action: str | None
    created_at: float
    started_at: float | None
    first_probe_at: float | None
    ready_at: float | None


@dataclass(frozen=True)
class EarlyFacts:
    """What the early start a bring-up takes over (pnr.lifecycle.early) left in the domain's chunk-state file:
    each chunk's phase, container, action and times (`ChunkProgress.to_json`)."""

    run_id: str
    chunks: Mapping[str, Mapping[str, object]]

    @classmethod
    def read(cls, runtime_dir: Path, domain: str, run_id: str) -> EarlyFacts | None:
        """The facts of early start `run_id`, None when the file is another run's (or missing)."""
        data = ChunkStateFile(runtime_dir, domain).read()
        chunks = data.get("chunks")
        if data.get("flow_run_id") != run_id or not isinstance(chunks, dict):
            return None
        return cls(run_id, {k: v for k, v in chunks.items() if isinstance(v, dict)})

    def of(self, chunk: str, container: ContainerState) -> tuple[str, dict[str, float]] | None:
        """`chunk`'s action and times as the early start saw them, if `container` is the one it started for the
        chunk (else None): created_at, started_at, and first_probe_at, ready_at if it became ready."""
        fact = self.chunks.get(chunk) or {}
        if fact.get("container_id") != container.id or container.labels.get(LABEL_RUN) != self.run_id:
            return None
        keys = ["created_at", "started_at"]
        if fact.get("phase") == Phase.READY.value:
            keys += ["first_probe_at", "ready_at"]
        times = {k: float(v) for k in keys if isinstance(v := fact.get(k), int | float)}
        action = fact.get("action")
        return (action if isinstance(action, str) else "created"), times


class CpuxState:
    """The live state of one CPUX bring-up, shared by its scheduler, its chunk drivers and a later watch."""

    def __init__(
        self,
        *,
        plan: Plan,
        cpux: str,
        store: SignalStore,
        engine: EngineSource,
        config_path: str,
        timeout_seconds: float,
        run_timeout: float | None = None,
        control: RunControl | None = None,
        flow_run_id: str = "local",
        force_recreate: bool = False,
        early: EarlyFacts | None = None,
    ) -> None:
        self.plan = plan
        self.early = early  # the early start this run takes over: its containers' times and actions
        self.domain = plan.domain.name
        self.cpux = cpux
        self.store = store
        # every chunk's engine; a single engine stands for all of them
        self.engines = engine.engine_set(plan)
        self.engine = self.engines.default
        self.control = control or RunControl()
        self.config_path = config_path
        self.base_dir = Path(config_path).resolve().parent
        self.flow_run_id = flow_run_id
        self.force_recreate = force_recreate
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        # the bring-up's timeout as given, for messages (`timeout_seconds` is what was left when this CPUX began)
        self.timeout_seconds = run_timeout or timeout_seconds
        self.names = plan.chunks_of(cpux)
        self.progress = {n: ChunkProgress(n, cpux) for n in self.names}
        # chunks by phase, kept by `set_phase`: the supervisor asks "all final?" / "any active?" on every wake-up
        # (a phase change somewhere), O(1) instead of a scan of every chunk (O(chunks²) over a large run)
        self._by_phase = Counter(p.phase for p in self.progress.values())
        self.images: dict[str, str] = {}
        # chunks whose container name was free when the run prepared: no inspect before creating (see prepare)
        self.absent: set[str] = set()
        self.abort_error: Exception | None = None
        self.phase_changed = threading.Event()
        self._lock = threading.Lock()
        self._state_file = ChunkStateFile(store.runtime_dir, self.domain)
        self._dirty = True
        self._persisted_at = 0.0
        self._persist_every = persist_interval(len(self.names))

    @property
    def aborted(self) -> bool:
        return self.abort_error is not None

    def abort(self, error: Exception) -> None:
        """Stop the run: waiting chunks end blocked, probes stop, the scheduler returns (the first reason wins)."""
        if self.abort_error is None:
            self.abort_error = error
        self.store.poke()
        self.phase_changed.set()

    def engine_of(self, chunk: str) -> ContainerEngine:
        """The engine `chunk` runs on."""
        return self.engines.of(self.plan.chunks[chunk])

    def engine_lost(self, engine: str, why: str) -> EngineUnreachable:
        """Abort the run because engine `engine` stopped answering; the error names it and this run's chunks
        on it (with their phase). Returns the run's abort reason (the first one, if it was aborted already)."""
        on_it = [n for n in self.names if self.engines.name_of(self.plan.chunks[n]) == engine]
        chunks = ", ".join(f"{n} ({self.progress[n].phase.value})" for n in on_it) or "none in this cpux"
        error = EngineUnreachable(
            f"{self.engines.describe(engine)} stopped answering during the run of cpux {self.cpux}; "
            f"chunks on it: {chunks}. Nothing more is started.\n  {why.strip()}\n"
            f"  `pnr status {self.config_path}` shows what is left; `pnr down {self.config_path}` removes what "
            "it can reach (run it again once the engine answers)",
            engine,
        )
        self.abort(error)
        return self.abort_error if isinstance(self.abort_error, EngineUnreachable) else error

    def recount(self) -> None:
        """Count the chunks by phase again (after phases were restored directly, see `restart`)."""
        with self._lock:
            self._by_phase = Counter(p.phase for p in self.progress.values())

    @property
    def all_final(self) -> bool:
        return sum(self._by_phase[p] for p in Phase if p.final) == len(self.progress)

    @property
    def any_active(self) -> bool:
        return any(self._by_phase[p] for p in Phase if p.active)

    def set_phase(
        self, chunk: str, phase: Phase, detail: str = "", what: str | None = None, **fields: str | float | None
    ) -> None:
        """Record a chunk's phase and tell the run's observers (`what` names a watch transition)."""
        prog = self.progress[chunk]
        with self._lock:
            self._by_phase[prog.phase] -= 1
            self._by_phase[phase] += 1
            prog.phase = phase
            prog.detail = detail
            for key, value in fields.items():
                setattr(prog, key, value)
            self._dirty = True
        if time.monotonic() - self._persisted_at > self._persist_every:
            self.flush()
        self.control.publish(ProgressEvent(self.domain, self.cpux, chunk, phase.value, detail, time.time(), what))
        self.phase_changed.set()  # the supervisor looks again; chunks waiting on signals are not woken

    def flush(self, force: bool = False) -> None:
        """Write chunk states for `pnr status` if they changed — at most every `persist_interval` while running
        (rewriting the file on every phase change would cost O(chunks²) in a large domain); `force` at the end."""
        with self._lock:
            if not self._dirty or (not force and time.monotonic() - self._persisted_at < self._persist_every):
                return
            self._dirty = False
            self._persisted_at = time.monotonic()
            chunks = {n: p.to_json() for n, p in self.progress.items()}
            self._state_file.write(chunks, self.flow_run_id, pid=self.control.owner_pid)

    def unmet_text(self, expected: Mapping[str, PnR]) -> str:
        """`a is N (needs Y), b is U (needs Y)`: what a gate or flowout still waits on."""
        return ", ".join(f"{s} is {c} (needs {w})" for s, (c, w) in self.store.unmet(expected).items())
