"""Watch mode: after a bring-up, keep probing the ready chunks and act when readiness regresses.

    Watcher.run()   one thread per watched chunk; the calling thread re-reads the runtime folder and ends the
                    watch: `stop()` (Ctrl-C → `pnr.flows.interrupt_runs` → `stop_all`), `seconds`, or a
                    cancellation check (the Prefect flow run was cancelled).

    a chunk's own probe (its health_check at its interval_seconds; without one: the container must run)
        ready ──failure_threshold failures in a row (default 3)──▶ lost: failure mapping written (signal N)
        lost  ──success_threshold successes in a row──────────────▶ ready: success mapping written (signal Y)

    a chunk's gatekeeper stops holding (a producer was lost, or someone set a signal), per on_dependency_lost
        ignore   logged; nothing else happens
        stop     container stopped, its own signals → N (phase waiting) ──gate holds──▶ started, probed ──▶ ready
        restart  left running (phase waiting)  ──gate holds──▶ restarted, its signals → N, probed ──▶ ready

Dependents react through signals only, so losses and recoveries cascade along the signal graph. Chunks a
watch stopped stay stopped when the watch ends (`pnr up` starts them again). Nothing here knows Prefect:
`pnr.flows` runs `Watcher.run` as the `watch` task of the domain's flow run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pnr.config import DesignChunk, PnR, SignalCheck, iter_checks
from pnr.events import chunk_resource, domain_resource, emit, signal_resource
from pnr.exceptions import PnrError
from pnr.probes import NeverReady, ProbeContext, make_probe
from pnr.run import CpuxRun, Phase

DEFAULT_FAILURE_THRESHOLD = 3  # a watch tolerates blips: a check's own failure_threshold wins
NO_CHECK_INTERVAL = 1.0  # seconds between "is the container running?" for chunks without a health_check
MAX_EVENTS = 200  # transitions kept for the result
WATCH_CANCELLED = "the flow run was cancelled"

Notify = Callable[[str], None]
_watchers: set[Watcher] = set()
_notify: list[Notify] = []
_registry_lock = threading.Lock()


def stop_all(reason: str = "interrupted (Ctrl-C)") -> bool:
    """End every watch running in this process (each ends cleanly). False if none was running."""
    with _registry_lock:
        active = list(_watchers)
    for watcher in active:
        watcher.stop(reason)
    return bool(active)


def add_listener(listener: Notify) -> Callable[[], None]:
    """Receive one line when a watch starts and when it ends (the CLI prints them). Returns an unsubscribe."""
    _notify.append(listener)
    return lambda: _notify.remove(listener) if listener in _notify else None


def _tell(message: str) -> None:
    for listener in _notify:
        try:
            listener(message)
        except Exception:  # noqa: BLE001, S110 - a broken renderer must not break the watch
            pass


@dataclass(frozen=True)
class WatchEvent:
    """One transition: lost, recovered, dependency-lost (ignore), stopped, started, restarted."""

    at: float
    chunk: str
    what: str
    detail: str


class _Watched:
    """One chunk under watch: its probe counters and where it stands."""

    def __init__(self, run: CpuxRun, name: str, failure_threshold: int) -> None:
        self.run = run
        self.name = name
        self.spec: DesignChunk = run.plan.chunks[name]
        self.container = self.spec.container.name
        self.policy = run.plan.domain.dependency_policy(self.spec)
        check = self.spec.health_check
        self.interval = check.interval_seconds if check is not None else NO_CHECK_INTERVAL
        self.failure_threshold = (check.failure_threshold if check is not None else None) or failure_threshold
        self.success_threshold = check.success_threshold if check is not None else 1
        self.state = "ready"  # ready | lost | held (stopped by the watch) | starting (after a start/restart)
        self.gate_lost = False
        self.restart_pending = False
        self.fails = 0
        self.oks = 0
        self.last: tuple[bool, str] | None = None
        self.problem = ""  # last engine error of a gate action (logged once)

    def describe(self) -> str:
        check = self.spec.health_check
        what = f"{check.type} every {self.interval:g}s" if check is not None else f"container running, every {self.interval:g}s"
        return f"{self.name} ({what}, lost after {self.failure_threshold} failures; on_dependency_lost={self.policy})"


class Watcher:
    """Keeps probing the ready chunks of finished `CpuxRun`s until stopped; see the module docstring."""

    def __init__(
        self, runs: list[CpuxRun], *, seconds: float | None = None, cancelled: Callable[[], bool] | None = None,
        log: Notify = lambda _m: None, debug: Notify | None = None, poll: float = 0.2, cancel_poll: float = 2.0,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
    ) -> None:
        if not runs:
            raise ValueError("a watch needs at least one finished cpux run")
        self.runs = runs
        self.store = runs[0].store
        self.engine = runs[0].engine
        self.domain = runs[0].domain
        self.seconds = seconds
        self.cancelled = cancelled
        self.log = log
        self.debug = debug or log
        self.poll = poll
        self.cancel_poll = cancel_poll
        self.chunks = [
            _Watched(run, name, failure_threshold)
            for run in runs for name in run.names
            if run.progress[name].phase == Phase.READY and run.plan.chunks[name].kind == "service"
        ]
        self.events: list[WatchEvent] = []
        self.reason = ""
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._active = False

    # -- control -------------------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """End the watch (thread-safe; the first reason wins)."""
        with self._lock:
            if not self.reason:
                self.reason = reason
        self._stopped.set()
        self.store.poke()

    def run(self) -> dict[str, Any]:
        """Watch until stopped, `seconds` passed, or `cancelled()`; returns what happened."""
        started = time.monotonic()
        deadline = started + self.seconds if self.seconds is not None else None
        with _registry_lock:
            _watchers.add(self)
        self._active = True
        self.store.subscribe(self._on_signal)
        names = ", ".join(w.name for w in self.chunks) or "nothing"
        limit = f" for {self.seconds:g}s" if self.seconds is not None else " until Ctrl-C or cancellation"
        self.log(f"watching {len(self.chunks)} chunk(s){limit}: " + "; ".join(w.describe() for w in self.chunks))
        _tell(f"watching {names}{limit}")
        emit("pnr.domain.watch.started", domain_resource(self.domain), {"chunks": [w.name for w in self.chunks]})
        threads = [threading.Thread(target=self._loop, args=(w,), name=f"pnr-watch-{w.name}", daemon=True) for w in self.chunks]
        for thread in threads:
            thread.start()
        next_cancel_check = started + self.cancel_poll
        try:
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
        except BaseException as exc:  # Ctrl-C pressed twice, or Prefect's TerminationSignal: end, then re-raise
            self.stop(f"{type(exc).__name__}")
            raise
        finally:
            self._stopped.set()
            for thread in threads:
                thread.join(timeout=10)
            self._active = False
            for run in self.runs:
                run.flush()
            with _registry_lock:
                _watchers.discard(self)
            elapsed = time.monotonic() - started
            lost = sum(1 for e in self.events if e.what == "lost")
            held = [w.name for w in self.chunks if w.state == "held"]
            summary = f"watch ended: {self.reason} after {elapsed:.1f}s; {lost} regression(s)"
            if held:
                summary += f"; left stopped: {', '.join(held)} (`pnr up` starts them again)"
            self.log(summary)
            _tell(summary)
            emit("pnr.domain.watch.ended", domain_resource(self.domain), {"reason": self.reason, "lost": lost, "held": held})
        return {
            "ended": self.reason,
            "seconds": round(elapsed, 3),
            "chunks": {w.name: {"state": w.state, "policy": w.policy} for w in self.chunks},
            "events": [asdict(e) for e in self.events],
        }

    # -- one chunk -----------------------------------------------------------------------------------
    def _loop(self, w: _Watched) -> None:
        while not self._stopped.is_set():
            try:
                self._step(w)
            except Exception as exc:  # noqa: BLE001 - an engine hiccup must not end the watch of this chunk
                self.debug(f"{w.name}: watch step failed: {type(exc).__name__}: {exc}")
            self._stopped.wait(w.interval)

    def _step(self, w: _Watched) -> None:
        holds = self.store.holds(w.spec.gatekeeper)
        if not holds and not w.gate_lost:
            self._gate_lost(w)
        elif holds and w.gate_lost:
            self._gate_back(w)
        if w.state == "held" or self._stopped.is_set():
            return
        ok, observation = self._attempt(w)
        self._count(w, ok, observation)

    def _attempt(self, w: _Watched) -> tuple[bool, str]:
        state = self.engine.inspect(w.container)
        if state is None:
            return False, f"container {w.container} was removed"
        if not state.running:
            return False, f"container {w.container} is {state.status} (exit code {state.exit_code})"
        check = w.spec.health_check
        if check is None:
            return True, f"container {w.container} is running"
        try:  # a fresh probe per attempt: composites remember passed children, a watch must not
            probe = make_probe(check, ProbeContext(
                engine=self.engine, container_id=state.id, ports=w.spec.container.port_bindings(),
                network=f"pnr_{self.domain}", store=self.store,
            ))
        except (PnrError, ValueError) as exc:
            return False, f"cannot probe {check.type}: {exc}"
        try:
            return probe.attempt()
        except NeverReady as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - an observation, not a crash
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            probe.close()

    def _count(self, w: _Watched, ok: bool, observation: str) -> None:
        if ok:
            w.oks, w.fails = w.oks + 1, 0
        else:
            w.fails, w.oks = w.fails + 1, 0
        changed = w.last is None or w.last[0] != ok
        w.last = (ok, observation)
        if w.state == "ready":
            if ok:
                return
            if w.fails >= w.failure_threshold:
                w.state = "lost"
                written = self._write(self._lost_values(w.spec))
                detail = f"lost: {observation} ({w.fails} failures in a row)" + (f"; wrote {written}" if written else "")
                self.log(f"{w.name}: {detail}")
                self._transition(w, "lost", Phase.LOST, detail)
            else:
                (self.log if changed else self.debug)(f"{w.name}: watch attempt failed ({w.fails}/{w.failure_threshold}): {observation}")
            return
        # lost, or (re)started by the watch: recovered after success_threshold successes in a row
        if not ok:
            (self.log if changed else self.debug)(f"{w.name}: still not ready: {observation}")
            return
        if w.oks >= w.success_threshold:
            before, w.state = w.state, "ready"
            written = self._write(self._recovered_values(w.spec))
            what = "recovered" if before == "lost" else "ready"
            detail = f"{what}: {observation}" + (f"; wrote {written}" if written else "")
            self.log(f"{w.name}: {detail}")
            self._transition(w, what, Phase.READY, detail, ready_at=time.time())

    # -- a gate that stops holding, and holds again ----------------------------------------------------
    def _gate_lost(self, w: _Watched) -> None:
        unmet = ", ".join(f"{s} is {c} (needs {want})" for s, (c, want) in self.store.unmet(w.spec.gatekeeper).items())
        if w.policy == "stop":
            written = self._write(self._lost_values(w.spec))  # first: its own dependents react while it stops
            if not self._engine_action(w, "stop", lambda: self.engine.stop(w.container)):
                return
            w.state, w.fails, w.oks = "held", 0, 0
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
        if w.state == "held":
            if not self._engine_action(w, "start", lambda: self.engine.start(w.container)):
                return
            self._restarted(w, "started", f"gate holds again ({gate}): started {w.container}")
        elif w.restart_pending:
            def restart() -> None:
                self.engine.stop(w.container)
                self.engine.start(w.container)

            self._write(self._lost_values(w.spec))  # not ready while it restarts
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
        w.state, w.fails, w.oks, w.last = "starting", 0, 0, None
        self.log(f"{w.name}: {detail}; probing")
        w.run.set_phase(w.name, Phase.STARTING, detail, started_at=time.time())
        self._transition(w, what, Phase.PROBING, f"{detail}; probing")

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

    # -- signals -------------------------------------------------------------------------------------
    @staticmethod
    def _self_reported(spec: DesignChunk) -> set[str]:
        """Signals the chunk's container writes itself (signal checks): the watch reads them, never overwrites."""
        return {c.signal for c in iter_checks(spec.health_check) if isinstance(c, SignalCheck)} if spec.health_check else set()

    def _lost_values(self, spec: DesignChunk) -> dict[str, PnR]:
        """The failure mapping; without one, every flowout signal as N."""
        check = spec.health_check
        failure = check.status_mapping.failure if check is not None else None
        if failure is not None:
            values = {failure.key: failure.to_pnr((spec.flowout.get(failure.key) or PnR()).prompt)}
        else:
            values = {k: PnR(prompt=v.prompt, response=["lost"], tv="N") for k, v in spec.flowout.items()}
        own = self._self_reported(spec)
        return {k: v for k, v in values.items() if k not in own}

    def _recovered_values(self, spec: DesignChunk) -> dict[str, PnR]:
        """The success mapping; and the flowout, where the loss wrote it as N (no failure mapping)."""
        check = spec.health_check
        values: dict[str, PnR] = {}
        if check is None or check.status_mapping.failure is None:
            values.update(spec.flowout)
        success = check.status_mapping.success if check is not None else None
        if success is not None:
            values[success.key] = success.to_pnr((spec.flowout.get(success.key) or PnR()).prompt)
        own = self._self_reported(spec)
        return {k: v for k, v in values.items() if k not in own}

    def _write(self, values: dict[str, PnR]) -> str:
        if not values:
            return ""
        self.store.set(values)
        return ", ".join(f"{k}={v.tv}" for k, v in values.items())

    def _on_signal(self, name: str, old: PnR, new: PnR) -> None:
        if not self._active:
            return  # SignalStore has no unsubscribe: a finished watch goes quiet this way
        plan = self.runs[0].plan
        emit("pnr.signal.changed", {**signal_resource(self.domain, name), "pnr.tv": new.tv},
             {"old": old.model_dump(), "new": new.model_dump(), "consumers": plan.consumers.get(name, []), "watch": True},
             [{**domain_resource(self.domain), "prefect.resource.role": "domain"}])

    # -- reporting -----------------------------------------------------------------------------------
    def _transition(self, w: _Watched, what: str, phase: Phase | None, detail: str, **fields: Any) -> None:
        with self._lock:
            self.events.append(WatchEvent(time.time(), w.name, what, detail))
            del self.events[:-MAX_EVENTS]
        # the phase line reaches the CLI and the chunk-state file; `ignore` keeps the phase, changes the detail
        w.run.set_phase(w.name, phase or w.run.progress[w.name].phase, detail, **fields)
        emit(f"pnr.chunk.{what}", {**chunk_resource(self.domain, w.name), "pnr.cpux": w.run.cpux},
             {"cpux": w.run.cpux, "policy": w.policy, "detail": detail},
             [{**domain_resource(self.domain), "prefect.resource.role": "domain"}])
