"""Watch mode: after a bring-up, keep probing the ready chunks and act when readiness regresses.

    Watcher.run()   one thread per watched chunk; the calling thread re-reads the runtime folder and ends the
                    watch: `stop()` (Ctrl-C → the run's `RunControl.interrupt`), `seconds`, or a cancellation
                    check (the Prefect flow run was cancelled).
    request_restart()   `pnr restart`: a chunk restarted on purpose (signals N, stop, dependents react, start,
                    probed until ready); `settled()` says when every watched chunk is ready again.

    a chunk's own probe (its health_check at its interval_seconds; without one: the container must run)
        ready ──failure_threshold failures in a row (default 3)──▶ lost: failure mapping written (signal N)
        lost  ──success_threshold successes in a row──────────────▶ ready: success mapping written (signal Y)

    a chunk's gatekeeper stops holding (a producer was lost, or someone set a signal), per on_dependency_lost
        ignore   logged; nothing else happens
        stop     container stopped, its own signals → N (phase waiting) ──gate holds──▶ started, probed ──▶ ready
        restart  left running (phase waiting)  ──gate holds──▶ restarted, its signals → N, probed ──▶ ready

This module is the state machine only: attempts, the values a loss or recovery writes and the failure rules
are the chunk driver's (pnr.lifecycle.chunk) and the probes' (`Streak`), as in a bring-up. Dependents react
through signals only, so losses and recoveries cascade along the signal graph. Transitions reach observers
(CLI, Prefect events) through the run's `RunControl`. Chunks a watch stopped stay stopped when the watch
ends (`pnr up` starts them again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from pnr.exceptions import PnrError
from pnr.lifecycle.chunk import ChunkDriver
from pnr.lifecycle.cpux import CpuxRun
from pnr.lifecycle.state import Phase
from pnr.model import PnR
from pnr.probes import Streak
from pnr.records import RunNote

DEFAULT_FAILURE_THRESHOLD = 3  # a watch tolerates blips: a check's own failure_threshold wins
NO_CHECK_INTERVAL = 1.0  # seconds between "is the container running?" for chunks without a health_check
MAX_EVENTS = 200  # transitions kept for the result
WATCH_CANCELLED = "the flow run was cancelled"

Notify = Callable[[str], None]


@dataclass(frozen=True)
class WatchEvent:
    """One transition: lost, recovered, dependency-lost (ignore), stopped, started, restarted."""

    at: float
    chunk: str
    what: str
    detail: str


class WatchState(StrEnum):
    """Where a watched chunk stands (its run `Phase` is what observers see)."""

    READY = "ready"
    LOST = "lost"  # its probe regressed past the failure threshold
    HELD = "held"  # stopped by the watch (on_dependency_lost=stop, or a restart in progress)
    STARTING = "starting"  # started or restarted by the watch, probed until ready


_WHERE = {WatchState.HELD: "stopped by on_dependency_lost=stop", WatchState.STARTING: "restarted, not ready yet"}


class _Watched:
    """One chunk under watch: its driver, its streak and where it stands."""

    def __init__(self, run: CpuxRun, name: str, failure_threshold: int) -> None:
        self.run = run
        self.name = name
        self.driver: ChunkDriver = run.drivers[name]
        self.spec = self.driver.spec
        self.container = self.spec.container.name
        self.policy = run.plan.domain.dependency_policy(self.spec)
        check = self.spec.health_check
        self.interval = check.interval_seconds if check is not None else NO_CHECK_INTERVAL
        self.streak = Streak(
            success_threshold=check.success_threshold if check is not None else 1,
            failure_threshold=(check.failure_threshold if check is not None else None) or failure_threshold,
        )
        self.state = WatchState.READY
        self.gate_lost = False
        self.restart_pending = False
        self.restart_requested = False  # `pnr restart` asked for this chunk (see Watcher.request_restart)
        self.last: tuple[bool, str] | None = None
        self.problem = ""  # last engine error of a gate action (logged once)

    @property
    def quiet(self) -> bool:
        """Ready, its gate not lost, no restart pending or asked for: nothing for the watch to do."""
        return self.state is WatchState.READY and not (self.gate_lost or self.restart_pending or self.restart_requested)

    def describe(self) -> str:
        check = self.spec.health_check
        what = (
            f"{check.type} every {self.interval:g}s"
            if check is not None
            else f"container running, every {self.interval:g}s"
        )
        return (
            f"{self.name} ({what}, lost after {self.streak.failure_threshold} failures; "
            f"on_dependency_lost={self.policy})"
        )


class Watcher:
    """Keeps probing the ready chunks of finished `CpuxRun`s until stopped; see the module docstring."""

    def __init__(
        self,
        runs: list[CpuxRun],
        *,
        seconds: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        log: Notify = lambda _m: None,
        debug: Notify | None = None,
        poll: float = 0.2,
        cancel_poll: float = 2.0,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
    ) -> None:
        if not runs:
            raise ValueError("a watch needs at least one finished cpux run")
        self.runs = runs
        self.store = runs[0].store
        self.engine = runs[0].engine
        self.control = runs[0].control
        self.domain = runs[0].domain
        self.seconds = seconds
        self.cancelled = cancelled
        self.log = log
        self.debug = debug or log
        self.poll = poll
        self.cancel_poll = cancel_poll
        self.chunks = [
            _Watched(run, name, failure_threshold)
            for run in runs
            for name in run.names
            if run.progress[name].phase == Phase.READY and run.plan.chunks[name].kind == "service"
        ]
        self.events: list[WatchEvent] = []
        self.reason = ""
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    # -- control -------------------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """End the watch (thread-safe; the first reason wins)."""
        with self._lock:
            if not self.reason:
                self.reason = reason
        self._stopped.set()
        self.store.poke()

    def run(self) -> dict[str, object]:
        """Watch until stopped, `seconds` passed, or `cancelled()`; returns what happened."""
        started = time.monotonic()
        unregister = self.control.on_interrupt(self.stop)
        names = ", ".join(w.name for w in self.chunks) or "nothing"
        limit = f" for {self.seconds:g}s" if self.seconds is not None else " until Ctrl-C or cancellation"
        self.log(f"watching {len(self.chunks)} chunk(s){limit}: " + "; ".join(w.describe() for w in self.chunks))
        self.control.publish(
            RunNote(self.domain, "watch.started", f"watching {names}{limit}", {"chunks": [w.name for w in self.chunks]})
        )
        threads = [
            threading.Thread(target=self._loop, args=(w,), name=f"pnr-watch-{w.name}", daemon=True) for w in self.chunks
        ]
        for thread in threads:
            thread.start()
        try:
            self._until_stopped(started)
        except BaseException as exc:  # Ctrl-C pressed twice, or Prefect's TerminationSignal: end, then re-raise
            self.stop(f"{type(exc).__name__}")
            raise
        finally:
            self._stopped.set()
            for thread in threads:
                thread.join(timeout=10)
            unregister()
            elapsed = self._finish(started)
        return {
            "ended": self.reason,
            "seconds": round(elapsed, 3),
            "chunks": {w.name: {"state": w.state.value, "policy": w.policy} for w in self.chunks},
            "events": [asdict(e) for e in self.events],
        }

    def _until_stopped(self, started: float) -> None:
        deadline = started + self.seconds if self.seconds is not None else None
        next_cancel_check = started + self.cancel_poll
        while not self._stopped.is_set():
            self.store.refresh()  # files written from outside (pnr signal set, containers) count too
            for run in self.runs:
                run.flush()  # chunk states for `pnr status` (set_phase writes them at most every so often)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.stop(f"watch_seconds ({self.seconds:g}s) passed")
            elif self.cancelled is not None and now >= next_cancel_check:
                next_cancel_check = now + self.cancel_poll
                if self.cancelled():
                    self.stop(WATCH_CANCELLED)
            self._stopped.wait(self.poll)

    def _finish(self, started: float) -> float:
        for run in self.runs:
            run.flush(force=True)
        elapsed = time.monotonic() - started
        lost = sum(1 for e in self.events if e.what == "lost")
        held = [w.name for w in self.chunks if w.state is WatchState.HELD]
        summary = f"watch ended: {self.reason} after {elapsed:.1f}s; {lost} regression(s)"
        if held:
            summary += f"; left stopped: {', '.join(held)} (`pnr up` starts them again)"
        self.log(summary)
        self.control.publish(
            RunNote(self.domain, "watch.ended", summary, {"reason": self.reason, "lost": lost, "held": held})
        )
        return elapsed

    # -- one chunk -----------------------------------------------------------------------------------
    def _loop(self, w: _Watched) -> None:
        while not self._stopped.is_set():
            try:
                self._step(w)
            except Exception as exc:  # an engine hiccup must not end the watch of this chunk
                self.debug(f"{w.name}: watch step failed: {type(exc).__name__}: {exc}")
            self._stopped.wait(w.interval)

    def _step(self, w: _Watched) -> None:
        if w.restart_requested:
            self._restart(w)
            return
        holds = self.store.holds(w.spec.gatekeeper)
        if not holds and not w.gate_lost:
            self._gate_lost(w)
        elif holds and w.gate_lost:
            self._gate_back(w)
        if w.state is WatchState.HELD or self._stopped.is_set():
            return
        ok, observation = w.driver.attempt()
        self._count(w, ok, observation)

    def _count(self, w: _Watched, ok: bool, observation: str) -> None:
        w.streak.record(ok)
        changed = w.last is None or w.last[0] != ok
        w.last = (ok, observation)
        if w.state is WatchState.READY:
            if ok:
                return
            if w.streak.given_up:
                w.state = WatchState.LOST
                written = self._write(w.driver.lost_values(container_gone=not self._running(w)))
                detail = f"lost: {observation} ({w.streak.failures} failures in a row)" + (
                    f"; wrote {written}" if written else ""
                )
                self.log(f"{w.name}: {detail}")
                self._transition(w, "lost", Phase.LOST, detail)
            else:
                (self.log if changed else self.debug)(
                    f"{w.name}: watch attempt failed ({w.streak.failures}/{w.streak.failure_threshold}): {observation}"
                )
            return
        # lost, or (re)started by the watch: recovered after success_threshold successes in a row
        if not ok:
            (self.log if changed else self.debug)(f"{w.name}: still not ready: {observation}")
            return
        if w.streak.passed:
            before, w.state = w.state, WatchState.READY
            written = self._write(w.driver.recovered_values())
            what = "recovered" if before is WatchState.LOST else "ready"
            detail = f"{what}: {observation}" + (f"; wrote {written}" if written else "")
            self.log(f"{w.name}: {detail}")
            self._transition(w, what, Phase.READY, detail, ready_at=time.time())

    # -- a gate that stops holding, and holds again ----------------------------------------------------
    def _gate_lost(self, w: _Watched) -> None:
        unmet = w.run.unmet_text(w.spec.gatekeeper)
        if w.policy == "stop":
            written = self._write(w.driver.lost_values(container_gone=True))  # first: dependents react while it stops
            if not self._engine_action(w, "stop", lambda: w.driver.engine.stop(w.container)):
                return
            w.state = WatchState.HELD
            w.streak.reset()
            detail = f"stopped: waits on {unmet}" + (f"; wrote {written}" if written else "")
            self.log(f"{w.name}: {detail} (on_dependency_lost=stop)")
            self._transition(w, "stopped", Phase.WAITING, detail)
        elif w.policy == "restart":
            w.restart_pending = True
            detail = f"left running; restarts when its gate holds again: {unmet}"
            self.log(f"{w.name}: {detail} (on_dependency_lost=restart)")
            self._transition(w, "dependency-lost", Phase.WAITING, detail)
        else:
            detail = f"dependency lost, ignored (on_dependency_lost=ignore): {unmet}"
            self.log(f"{w.name}: {detail}")
            self._transition(w, "dependency-lost", None, detail)
        w.gate_lost = True

    def _gate_back(self, w: _Watched) -> None:
        gate = ", ".join(f"{s}={p.tv}" for s, p in w.spec.gatekeeper.items())
        if w.state is WatchState.HELD:
            if not self._engine_action(w, "start", lambda: w.driver.engine.start(w.container)):
                return
            self._restarted(w, "started", f"gate holds again ({gate}): started {w.container}")
        elif w.restart_pending:

            def restart() -> None:
                w.driver.engine.stop(w.container)  # the chunk's own engine
                w.driver.engine.start(w.container)

            self._write(w.driver.lost_values())  # not ready while it restarts
            if not self._engine_action(w, "restart", restart):
                return
            w.restart_pending = False
            self._restarted(w, "restarted", f"gate holds again ({gate}): restarted {w.container}")
        else:
            detail = f"gate holds again ({gate})"
            self.log(f"{w.name}: {detail}")
            self._transition(w, "dependency-back", None, detail)
        w.gate_lost = False

    def _restarted(self, w: _Watched, what: str, detail: str) -> None:
        w.state, w.last = WatchState.STARTING, None
        w.streak.reset()
        self.log(f"{w.name}: {detail}; probing")
        w.run.set_phase(w.name, Phase.STARTING, detail, started_at=time.time())
        self._transition(w, what, Phase.PROBING, f"{detail}; probing")

    # -- a restart asked for (`pnr restart`) -------------------------------------------------------------
    def request_restart(self, name: str) -> None:
        """Restart a watched chunk's container on purpose (`pnr restart`). Done in the chunk's own watch thread,
        between its attempts: its lost values are written (as if its container were gone), it is stopped with its
        own stop signal and grace period, and once every chunk whose gate that broke has reacted (its
        on_dependency_lost policy), started again and probed until ready — the recovery writes its success
        mapping, and dependents follow as after any loss. ValueError if `name` is not watched."""
        for w in self.chunks:
            if w.name == name:
                w.restart_requested = True
                return
        raise ValueError(f"{name} is not watched")

    def settled(self) -> bool:
        """Every watched chunk is ready, its gate holds, and nothing is left to do (no restart pending)."""
        return all(w.quiet and self.store.holds(w.spec.gatekeeper) for w in self.chunks)

    def unsettled(self) -> dict[str, str]:
        """Chunks that are not ready again, with where they stand and their last observation."""
        out = {}
        for w in self.chunks:
            if w.quiet:
                continue
            where = {
                WatchState.HELD: "stopped by on_dependency_lost=stop",
                WatchState.STARTING: "restarted, not ready yet",
            }.get(w.state, w.state.value)
            if w.restart_requested:
                where = "restart not done" + (f": {w.problem}" if w.problem else "")
            elif w.gate_lost or not self.store.holds(w.spec.gatekeeper):
                where += f"; waits on {w.run.unmet_text(w.spec.gatekeeper)}"
            if w.last is not None and not w.last[0]:
                where += f"; last attempt: {w.last[1]}"
            out[w.name] = where
        return out

    def _restart(self, w: _Watched, settle_seconds: float = 30.0) -> None:
        written = self._write(w.driver.lost_values(container_gone=True))  # first: dependents react while it stops
        w.state, w.last = WatchState.HELD, None
        w.streak.reset()
        detail = f"restarting {w.container}: stopping" + (f"; wrote {written}" if written else "")
        self.log(f"{w.name}: {detail}")
        self._transition(w, "stopped", Phase.STARTING, detail)
        if not self._engine_action(w, "stop", lambda: w.driver.engine.stop(w.container)):
            return  # tried again at the next step
        # the chunks whose gate this broke react before it comes back (a quick restart must not slip past them)
        end = time.monotonic() + settle_seconds
        while not self._stopped.is_set() and time.monotonic() < end:
            if all(o.gate_lost or self.store.holds(o.spec.gatekeeper) for o in self.chunks if o is not w):
                break
            self._stopped.wait(self.poll / 4)
        if self._stopped.is_set() or not self._engine_action(w, "start", lambda: w.driver.engine.start(w.container)):
            return
        w.restart_requested = False
        self._restarted(w, "restarted", f"restarted {w.container} (pnr restart)")

    def _running(self, w: _Watched) -> bool:
        state = w.driver.engine.inspect(w.container)  # the chunk's own engine
        return state is not None and state.running

    def _engine_action(self, w: _Watched, what: str, action: Callable[[], None]) -> bool:
        try:
            action()
        except PnrError as exc:
            if w.problem != str(exc):
                w.problem = str(exc)
                self.log(f"{w.name}: could not {what} {w.container}: {exc} (will try again)")
            return False
        w.problem = ""
        return True

    def _write(self, values: dict[str, PnR]) -> str:
        if not values:
            return ""
        self.store.set(values)
        return ", ".join(f"{k}={v.tv}" for k, v in values.items())

    def _transition(
        self, w: _Watched, what: str, phase: Phase | None, detail: str, **fields: str | float | None
    ) -> None:
        with self._lock:
            self.events.append(WatchEvent(time.time(), w.name, what, detail))
            del self.events[:-MAX_EVENTS]
        # the phase line reaches observers and the chunk-state file; `ignore` keeps the phase, changes the detail
        w.run.set_phase(w.name, phase or w.run.progress[w.name].phase, detail, what=what, **fields)
