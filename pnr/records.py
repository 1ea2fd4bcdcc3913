"""Plain records that cross layers and processes: a run's events and a domain's status. Standard library only,
so the thin `pnr up` client and the runner's protocol can use them without importing pnr's engine or models."""

from __future__ import annotations

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
