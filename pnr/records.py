"""Plain records that cross layers and processes: a run's events, a domain's status, a run's timeline and what a
dry run would do. Standard library only, so the thin `pnr up` client and the runner's protocol can use them
without importing pnr's engine or models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Required, TypeAlias, TypedDict

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
"""A value as `json.loads` gives it (and a YAML document whose keys are strings)."""
JsonObject: TypeAlias = dict[str, JsonValue]


@dataclass(frozen=True)
class ProgressEvent:
    """A chunk's phase changed (`what` names a watch transition: lost, recovered, stopped, started, ...)."""

    domain: str
    cpux: str
    chunk: str
    phase: str
    detail: str
    at: float
    what: str | None = None


@dataclass(frozen=True)
class RunNote:
    """A line about the run as a whole (watch started / ended), with a payload for events."""

    domain: str
    what: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


RunEvent = ProgressEvent | RunNote

ChunkStatusName = Literal["ready", "waiting", "executing", "completed", "failed", "stopped", "unknown"]


class SignalValueJson(TypedDict):
    prompt: str
    response: list[str]
    tv: str


class ChunkStatusJson(TypedDict):
    status: ChunkStatusName
    engine: str
    container: str | None
    container_id: str | None
    cpux: str
    phase: str | None
    detail: str | None


class EngineStatusJson(TypedDict):
    host: str | None
    address: str | None
    reachable: bool
    error: str | None


class DomainStatusJson(TypedDict, total=False):
    """A domain's status as `pnr status --json` prints it (and as it crosses a process boundary)."""

    domain: Required[str]
    signals: dict[str, SignalValueJson]
    stale: dict[str, str]
    chunks: dict[str, ChunkStatusJson]
    runtime_dir: str
    problems: dict[str, str]
    engine: bool  # every engine answered
    engines: dict[str, EngineStatusJson]


@dataclass(frozen=True)
class SignalValue:
    """A signal's value as read from the runtime files: the PnR triple."""

    prompt: str
    response: list[str]
    tv: str

    def to_json(self) -> SignalValueJson:
        return {"prompt": self.prompt, "response": list(self.response), "tv": self.tv}


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

    def to_json(self) -> ChunkStatusJson:
        return {
            "status": self.status,
            "engine": self.engine,
            "container": self.container,
            "container_id": self.container_id,
            "cpux": self.cpux,
            "phase": self.phase,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class EngineStatus:
    host: str | None
    address: str | None
    reachable: bool
    error: str | None

    def to_json(self) -> EngineStatusJson:
        return {"host": self.host, "address": self.address, "reachable": self.reachable, "error": self.error}


@dataclass(frozen=True)
class DomainStatus:
    domain: str
    signals: dict[str, SignalValue]
    chunks: dict[str, ChunkStatus]
    runtime_dir: str
    stale: dict[str, str] = field(default_factory=dict)  # signal → why its value may no longer hold
    problems: dict[str, str] = field(default_factory=dict)  # runtime file → why it was ignored
    engines: dict[str, EngineStatus] = field(default_factory=dict)

    @property
    def every_engine_answered(self) -> bool:
        return bool(self.engines) and all(e.reachable for e in self.engines.values())

    def to_json(self) -> DomainStatusJson:
        """The shape `pnr status --json` prints."""
        return {
            "domain": self.domain,
            "signals": {name: value.to_json() for name, value in sorted(self.signals.items())},
            "stale": dict(self.stale),
            "chunks": {name: c.to_json() for name, c in self.chunks.items()},
            "runtime_dir": self.runtime_dir,
            "problems": dict(self.problems),
            "engine": self.every_engine_answered,
            "engines": {name: e.to_json() for name, e in self.engines.items()},
        }

    @classmethod
    def from_json(cls, data: DomainStatusJson) -> DomainStatus:
        """The inverse of `to_json` (a status that crossed a process boundary as JSON)."""
        return cls(
            domain=str(data["domain"]),
            signals={name: SignalValue(**v) for name, v in data.get("signals", {}).items()},
            chunks={name: ChunkStatus(**c) for name, c in data.get("chunks", {}).items()},
            runtime_dir=str(data.get("runtime_dir", "")),
            stale=dict(data.get("stale", {})),
            problems=dict(data.get("problems", {})),
            engines={name: EngineStatus(**e) for name, e in data.get("engines", {}).items()},
        )


@dataclass(frozen=True)
class TimelineChunk:
    """One chunk's times in a run (epoch seconds; None: never reached) and its last phase."""

    name: str
    phase: str
    created_at: float | None
    started_at: float | None
    first_probe_at: float | None
    ready_at: float | None
    cpux: str = ""


@dataclass(frozen=True)
class RunTimeline:
    """What the readiness timeline of a run is drawn from (`pnr.lifecycle.timeline.timeline_svg`): each chunk's
    times, which chunk waits on which, and the end of the time axis (None: the last moment known)."""

    domain: str
    chunks: list[TimelineChunk]
    depends_on: dict[str, list[str]]
    end: float | None = None

    def to_json(self) -> dict[str, object]:
        chunks = [dict(vars(c)) for c in self.chunks]  # flat records: no deep copy (`asdict`)
        return {"domain": self.domain, "chunks": chunks, "depends_on": self.depends_on, "end": self.end}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RunTimeline:
        """The inverse of `to_json` (a timeline that crossed a process boundary as JSON)."""
        chunks, depends_on, end = data.get("chunks"), data.get("depends_on"), data.get("end")
        return cls(
            domain=str(data["domain"]),
            chunks=[TimelineChunk(**c) for c in chunks if isinstance(c, dict)] if isinstance(chunks, list) else [],
            depends_on={str(n): list(d) for n, d in depends_on.items()} if isinstance(depends_on, dict) else {},
            end=float(end) if isinstance(end, int | float) else None,
        )


@dataclass(frozen=True)
class PlannedAction:
    """What `pnr up` would do to one chunk's container, and why (`pnr up --dry-run`)."""

    chunk: str
    container: str
    action: str  # create | reuse | recreate | refuse
    reasons: list[str]


@dataclass(frozen=True)
class DryRun:
    """What `pnr up` would do to a domain: one action per chunk, in start order; nothing was touched."""

    domain: str
    actions: list[PlannedAction]

    @property
    def refused(self) -> bool:
        return any(a.action == "refuse" for a in self.actions)
