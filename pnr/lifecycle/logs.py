"""The output of a domain's containers (`pnr logs`): which containers, their lines merged in time, and following
several of them at once.

    log_sources()   the containers pnr labelled for the domain, for the chosen chunks (plan order), on whichever
                    engine each chunk runs; an unknown chunk is a ConfigError naming it
    read_logs()     every line so far (or the last N per container), merged across containers by the engine's
                    timestamps, as `LogLine`s
    LogFollower     one thread per container (`Engine.logs_stream`), lines merged as they come; ends when every
                    container has stopped, or on `stop()` (Ctrl-C)

Rendering (prefixes, colours) is the CLI's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from pnr.engines import LABEL_CHUNK
from pnr.engines.engineset import EngineSource
from pnr.engines.protocol import ContainerEngine, LineStream
from pnr.exceptions import ConfigError, ConfigIssue, EngineError
from pnr.model import Plan


@dataclass(frozen=True)
class LogSource:
    """One chunk's container, on the engine it runs on."""

    chunk: str
    container: str
    container_id: str
    running: bool
    engine: ContainerEngine


@dataclass(frozen=True)
class LogLine:
    """One line of a container's output; `at` is the engine's time of it (epoch seconds) when known, `stamp` the
    engine's RFC 3339 text of that time ("" unless timestamps were asked for)."""

    chunk: str
    text: str
    at: float | None = None
    stamp: str = ""


def log_sources(plan: Plan, engine: EngineSource, chunks: Sequence[str] = ()) -> tuple[list[LogSource], list[str]]:
    """The containers of `chunks` (default: every chunk), in plan order, and the chosen chunks that have none.

    Only containers labelled for this domain count. ConfigError if a chunk is not in the domain; EngineError
    (EngineUnreachable) if an engine does not answer."""
    unknown = [c for c in chunks if c not in plan.chunks]
    if unknown:
        have = ", ".join(plan.chunks)
        raise ConfigError(
            plan.source,
            [ConfigIssue("", f"no chunk named {c!r} in domain {plan.domain.name} (it has: {have})") for c in unknown],
        )
    order = [n for cpux in plan.cpux_order for n in plan.chunks_of(cpux)]
    wanted = [n for n in order if not chunks or n in chunks]
    engines = engine.engine_set(plan)
    found: dict[str, LogSource] = {}
    for ename, e in engines.items():
        if not any(engines.name_of(plan.chunks[n]) == ename for n in wanted):
            continue
        for state in e.owned_containers(plan.domain.name):
            chunk = state.labels.get(LABEL_CHUNK, "")
            if chunk in wanted and engines.name_of(plan.chunks[chunk]) == ename:
                found.setdefault(chunk, LogSource(chunk, state.name, state.id, state.running, e))
    return [found[n] for n in wanted if n in found], [n for n in wanted if n not in found]


def parse_stamp(text: str) -> float | None:
    """Epoch seconds of an engine timestamp (`2026-11-27T20:55:36.123456789Z`); None if it is not one."""
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most 6 fractional digits: keep the zone, trim the digits
        digits = rest.rstrip("Z").split("+")[0].split("-")[0]
        zone = rest[len(digits) :] or "Z"
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _split_stamp(line: str) -> tuple[str, float | None, str]:
    stamp, _, text = line.partition(" ")
    at = parse_stamp(stamp)
    return (text, at, stamp) if at is not None else (line, None, "")


def read_logs(sources: Sequence[LogSource], *, tail: int | None = None, timestamps: bool = False) -> list[LogLine]:
    """Every line so far of each source (or its last `tail`), merged across containers in the engine's time order
    (lines of one container keep their order). EngineError if a log cannot be read."""
    merged: list[tuple[float, int, int, LogLine]] = []
    for rank, src in enumerate(sources):
        for n, raw in enumerate(src.engine.logs_since(src.container_id, tail=tail, timestamps=True)):
            text, at, stamp = _split_stamp(raw)
            line = LogLine(src.chunk, text, at, stamp if timestamps else "")
            merged.append((at if at is not None else 0.0, rank, n, line))
    merged.sort(key=lambda item: item[:3])
    return [item[3] for item in merged]


class _End:
    def __init__(self, chunk: str, error: str = "") -> None:
        self.chunk = chunk
        self.error = error


class LogFollower:
    """Follows several containers' logs at once: one thread per container, lines merged into one stream.

    `lines()` yields `LogLine`s (and `FollowEnded` for a container whose log ended) until every log has ended or
    `stop()` was called; it wakes every `poll` seconds, so Ctrl-C reaches the caller at once."""

    def __init__(self, sources: Sequence[LogSource], *, tail: int | None = None, timestamps: bool = False) -> None:
        self.sources = list(sources)
        self.tail = tail
        self.timestamps = timestamps
        self._queue: queue.Queue[LogLine | _End] = queue.Queue()
        self._streams: list[LineStream] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for src in self.sources:
            thread = threading.Thread(target=self._follow, args=(src,), name=f"pnr-logs-{src.chunk}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _follow(self, src: LogSource) -> None:
        error = ""
        try:
            stream = src.engine.logs_stream(src.container_id, tail=self.tail, timestamps=self.timestamps)
            with self._lock:
                self._streams.append(stream)
                stopped = self._stopped.is_set()
            if stopped:
                stream.close()
            for raw in stream:
                if self._stopped.is_set():
                    break
                text, at, stamp = _split_stamp(raw) if self.timestamps else (raw, None, "")
                self._queue.put(LogLine(src.chunk, text, at, stamp))
        except EngineError as exc:
            error = str(exc)
        finally:
            self._queue.put(_End(src.chunk, error))

    def lines(self, poll: float = 0.2) -> Iterator[LogLine | FollowEnded]:
        """Merged lines as they come, until every log ended or `stop()`."""
        open_ = len(self.sources)
        while open_ and not self._stopped.is_set():
            try:
                item = self._queue.get(timeout=poll)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                open_ -= 1
                yield FollowEnded(item.chunk, item.error)
            else:
                yield item

    def stop(self, join: float = 2.0) -> None:
        """End following (thread-safe): every stream is closed, the threads end."""
        with self._lock:
            self._stopped.set()
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        for thread in self._threads:
            thread.join(timeout=join)


@dataclass(frozen=True)
class FollowEnded:
    """A followed container's log ended (it stopped, or was removed); `error` if it could not be read."""

    chunk: str
    error: str = ""
