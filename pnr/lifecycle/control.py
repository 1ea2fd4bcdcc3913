"""One bring-up's channel to the outside: who observes it, and how to stop it.

A `RunControl` belongs to one run. Its listeners (the CLI's progress lines, Prefect artifacts and events) hear
only that run's events, and `interrupt()` stops only that run — two runs of one domain in one process never
see each other. A run's objects travel down as arguments; the one hop that cannot carry an object is the
entry into a Prefect flow (its parameters are API data), so a caller hands its control to the flow it calls
with `use_control()`: a context variable, scoped to that call and its thread, never a process-wide registry.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pnr.records import RunEvent

if TYPE_CHECKING:
    from pnr.engines import EngineSet
    from pnr.model import Plan

_T = TypeVar("_T")

Listener = Callable[[RunEvent], object]
Prepared = tuple[dict[str, str], set[str]]  # image id per chunk; chunks whose container name is free


@dataclass(frozen=True)
class PreparingAhead:
    """The engine work of a bring-up's first CPUX (`start_preparing`), begun by the process that is about to call
    the flow — before Prefect has created and started the flow run (~0.1 s of API calls on a quiet server, more
    when several runs begin at once), which would otherwise come first. The flow takes it over (`take`) when it
    is for the same CPUX and options; otherwise it is left to finish on its own (it creates only what the
    bring-up would: the network, pulled images)."""

    cpux: str
    take_over: bool
    engines: EngineSet
    preparing: Future[Prepared]  # never a build: a build's output belongs to the flow run's `prepare` task

    def take(self, cpux: str, build: bool, take_over: bool) -> PreparingAhead | None:
        return self if not build and (cpux, take_over) == (self.cpux, self.take_over) else None


class RunControl:
    """Listeners and stoppers of one run; thread-safe. `environ` is the environment `${VAR}` in container env is
    taken from (default: this process's), for a run executed on behalf of another process (the resident runner).
    `owner_pid` is that other process (`pnr status` tells a live run from a dead one by it). `flow_run_id` is set
    by the flow once its run exists, so the caller can point at it in the UI. `checked`: the plan of the config
    as the caller checked it before the run (the flow then plans it no second time). `ahead`: the engine work
    of the first CPUX, begun by the caller before the flow run exists (`prepare_ahead`)."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, owner_pid: int | None = None, checked: Plan | None = None
    ) -> None:
        self.environ: dict[str, str] | None = dict(environ) if environ is not None else None
        self.owner_pid = owner_pid  # the process the run is for (a runner's client), if not this one
        self.checked = checked
        self.ahead: PreparingAhead | None = None
        self.flow_run_id: str | None = None
        self._listeners: list[Listener] = []
        self._stoppers: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self.interrupted: str | None = None

    def plan_of(self, config_path: str) -> Plan | None:
        """The plan the caller checked, if it is the plan of `config_path`."""
        return self.checked if self.checked is not None and self.checked.source == config_path else None

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive every ProgressEvent / RunNote of this run. Returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._remove(self._listeners, listener)

    def publish(self, event: RunEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a broken renderer must not break the run
                listener(event)

    def on_interrupt(self, stopper: Callable[[str], None]) -> Callable[[], None]:
        """`stopper(reason)` is called by `interrupt()`; a stopper registered after an interrupt runs at once."""
        with self._lock:
            self._stoppers.append(stopper)
            reason = self.interrupted
        if reason is not None:
            stopper(reason)
        return lambda: self._remove(self._stoppers, stopper)

    def interrupt(self, reason: str = "interrupted (Ctrl-C)") -> bool:
        """Stop this run (its parts end cleanly and record why). False if nothing of it was running."""
        with self._lock:
            self.interrupted = self.interrupted or reason
            stoppers = list(self._stoppers)
        for stopper in stoppers:
            stopper(reason)
        return bool(stoppers)

    def _remove(self, items: list[_T], item: _T) -> None:
        with self._lock:
            if item in items:
                items.remove(item)


_CURRENT: ContextVar[RunControl | None] = ContextVar("pnr_run_control", default=None)


@contextlib.contextmanager
def use_control(control: RunControl) -> Iterator[RunControl]:
    """The flows called inside this block (in this thread) report to, and obey, `control`."""
    token = _CURRENT.set(control)
    try:
        yield control
    finally:
        _CURRENT.reset(token)


def current_control() -> RunControl:
    """The caller's control (see `use_control`), else a new one that nobody outside observes."""
    return _CURRENT.get() or RunControl()
