"""A bring-up as types: what is asked (`UpRequest`), what is heard while it runs (`Accepted`, `BackendChosen`,
the run's `ProgressEvent` / `RunNote`), and how it ended (`UpOutcome`: the exit status and message, the domain's
status table, the run's timeline). The same types cross the resident runner's connection, one JSON object a
line, encoded and decoded only here; an in-process run builds the same outcome.

    client → runner   {"op": "up", "args": UpRequest, "env": {...}, "pid": N, "shown_as": "..."}
                      {"op": "interrupt", "reason": "..."}          {"op": "ping"}
    runner → client   {"type": "accepted", ...Accepted}
                      {"type": "event", "kind": "ProgressEvent" | "RunNote", ...}
                      {"type": "done", ...UpOutcome}                {"type": "pong", ...}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pnr.exceptions import PnrError, exit_status_of
from pnr.records import DomainStatus, ProgressEvent, RunEvent, RunNote, RunTimeline


@dataclass(frozen=True)
class UpRequest:
    """One `pnr up`: the parameters of the bring-up flow (`pnr.prefect.flows.bring_up`), as the CLI, a
    deployment and the runner pass them."""

    config_path: str
    cpux: str | None = None
    runtime_dir: str | None = None
    timeout_seconds: float | None = None
    build: bool = False
    force_recreate: bool = False
    watch: bool = False
    watch_seconds: float | None = None
    env_files: list[str] | None = None  # extra env files for `${VAR}` values (`pnr up --env-file`), absolute
    early_start: str | None = None  # the id of the early start this run takes over (pnr.lifecycle.early)

    def flow_parameters(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """Runs of one key (config and runtime folder: one domain's state) must not overlap after an interrupt."""
        return f"{self.config_path}|{self.runtime_dir}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpRequest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Accepted:
    """The config was checked and the run starts: the facts of the client's header line. `runtime_dir` as the
    client names it (the runner is sent an absolute path)."""

    domain: str
    chunks: int
    cpuxs: list[str]
    engines: bool = False
    runtime_dir: str = ""


@dataclass(frozen=True)
class BackendChosen:
    """The run is handed to its Prefect backend now (client side only); `started_now`: pnr's server was not
    running and was started in the background for it (its UI at `ui_url`); `early`: the run began before, while
    the server or the runner started (`pnr.lifecycle.early`), and its flow run takes over now."""

    ui_url: str | None
    started_now: bool
    early: bool = False


UpEvent = Accepted | BackendChosen | RunEvent  # what the caller of `pnr.backend.run.run_up` hears


@dataclass(frozen=True)
class UpOutcome:
    """How a bring-up ended: `exit_status` is the CLI's (0 ok, 1 failed, 2 bad config, 130 interrupted by
    Ctrl-C in the client); `result` is the flow's result when ok. `status` (the domain's chunk table) and
    `timeline` are there once the run started; `flow_run_url` where the run can be seen in Prefect's UI."""

    ok: bool
    exit_status: int = 0
    message: str = ""
    interrupted: bool = False
    flow_run_id: str | None = None
    result: dict[str, Any] | None = None
    status: DomainStatus | None = None
    error: str | None = None  # the kind of error that ended the run (`EngineUnreachable`, `ConfigError`, ...)
    timeline: RunTimeline | None = None
    flow_run_url: str | None = None

    @classmethod
    def done(cls, result: dict[str, Any], flow_run_id: str | None = None) -> UpOutcome:
        return cls(True, 0, "", False, flow_run_id, result)

    @classmethod
    def failed(cls, exc: BaseException, flow_run_id: str | None = None, interrupted: bool = False) -> UpOutcome:
        """The run raised `exc`: a pnr error's own exit status; anything else (Ctrl-C in a run's thread too) 1."""
        status = exc.exit_status if isinstance(exc, PnrError) else 1
        return cls(False, status, str(exc), interrupted, flow_run_id, error=type(exc).__name__)

    @classmethod
    def stopped(cls, message: str = "interrupted") -> UpOutcome:
        """Ctrl-C in the client before the run's outcome arrived."""
        return cls(False, exit_status_of(KeyboardInterrupt()), message, True)

    def with_report(self, status: DomainStatus | None, timeline: RunTimeline | None) -> UpOutcome:
        """This outcome with the run's status table and timeline."""
        return replace(self, status=status, timeline=timeline)

    @property
    def chunk_count(self) -> int:
        """The chunks the run brought up (its result's)."""
        cpuxs = (self.result or {}).get("cpuxs") or {}
        return sum(len(chunks) for chunks in cpuxs.values())

    @property
    def watch_ended(self) -> str:
        """Why the watch after the bring-up ended (`--watch`)."""
        watch = (self.result or {}).get("watch") or {}
        return str(watch.get("ended", ""))

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # `asdict` would copy the result deeply
        data["status"] = self.status.to_json() if self.status is not None else None
        data["timeline"] = self.timeline.to_json() if self.timeline is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpOutcome:
        status, timeline = data.get("status"), data.get("timeline")
        return cls(
            ok=bool(data.get("ok")),
            exit_status=int(data.get("exit_status") or 0),
            message=str(data.get("message") or ""),
            interrupted=bool(data.get("interrupted")),
            flow_run_id=data.get("flow_run_id"),
            result=data.get("result"),
            status=DomainStatus.from_json(status) if status else None,
            error=data.get("error"),
            timeline=RunTimeline.from_json(timeline) if timeline else None,
            flow_run_url=data.get("flow_run_url"),
        )


Message = Accepted | RunEvent | UpOutcome  # what the runner sends a client


def encode(message: Message | Mapping[str, object]) -> bytes:
    """One line of the runner's protocol. Mappings are the requests and the ping's answer."""
    if isinstance(message, UpOutcome):
        data: dict[str, object] = {"type": "done", **message.to_json()}
    elif isinstance(message, Accepted):
        data = {"type": "accepted", **asdict(message)}
    elif isinstance(message, ProgressEvent | RunNote):
        data = {"type": "event", "kind": type(message).__name__, **asdict(message)}
    else:
        data = dict(message)
    return json.dumps(data, default=str).encode() + b"\n"


def decode(line: bytes) -> Message:
    """A line the runner sent to a client (ValueError: not one of its messages)."""
    return from_message(json.loads(line))


def from_message(message: Mapping[str, Any]) -> Message:
    """A message the runner sent, already parsed from its JSON line, as its type."""
    data = dict(message)
    kind = data.pop("type", None)
    if kind == "done":
        return UpOutcome.from_json(data)
    if kind == "accepted":
        known = {f.name for f in fields(Accepted)}
        return Accepted(**{k: v for k, v in data.items() if k in known})
    if kind == "event" and data.pop("kind", None) == "ProgressEvent":
        return ProgressEvent(**data)
    if kind == "event":
        return RunNote(**data)
    raise ValueError(f"not a message of pnr's runner: {str(message)[:200]}")
