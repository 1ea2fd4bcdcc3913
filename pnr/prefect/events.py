"""Prefect events of a bring-up, for automations (see docs/prefect.md).

| event                     | resource id                    | when                                                 |
|---------------------------|--------------------------------|------------------------------------------------------|
| `pnr.signal.changed`      | `pnr.signal.<domain>.<signal>` | a truth value changed (by pnr or from outside)        |
| `pnr.chunk.starting`      | `pnr.chunk.<domain>.<chunk>`   | its gate opened; the container is starting            |
| `pnr.chunk.ready`         | `pnr.chunk.<domain>.<chunk>`   | its readiness probe passed and its flowout holds      |
| `pnr.chunk.failed`        | `pnr.chunk.<domain>.<chunk>`   | its container exited or its probe failed              |
| `pnr.chunk.blocked`       | `pnr.chunk.<domain>.<chunk>`   | the run stalled or timed out while it waited          |
| `pnr.domain.up.started`   | `pnr.domain.<domain>`          | a bring-up began                                      |
| `pnr.domain.up.completed` | `pnr.domain.<domain>`          | every chunk is ready                                  |
| `pnr.domain.up.failed`    | `pnr.domain.<domain>`          | the bring-up failed (payload: the error)              |
| `pnr.domain.up.cancelled` | `pnr.domain.<domain>`          | cancelled or crashed; pnr tore down what it started   |

`PNR_CHUNK_EVENTS=false` leaves out a bring-up's `pnr.chunk.starting` / `.ready` and `pnr.signal.changed` (the
bulk of the events: about three per chunk, each ~5 ms of the Prefect server's CPU); failures, the domain's events
and the watch's still go.

Watch mode adds `pnr.domain.watch.started` / `.ended` and `pnr.chunk.<transition>` (lost, recovered, stopped,
started, restarted, dependency-lost, dependency-back), and `pnr.signal.changed` with `"watch": true`.

Every event carries the labels `pnr.domain` (and `pnr.chunk` / `pnr.signal`, `pnr.tv`), the domain as a related
resource with role `domain`, and — when emitted inside a flow run — Prefect's own related resources (flow run,
flow, deployment, tags). Emitting is fire-and-forget (Prefect's events worker); outside a run context with no
API configured nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pnr.lifecycle import ProgressEvent, RunControl, RunNote
from pnr.model import Plan, PnR
from pnr.prefect.observer import RunObserver
from pnr.records import RunEvent
from pnr.runtime import SignalStore

if TYPE_CHECKING:
    from prefect.events import Event

log = logging.getLogger(__name__)

CHUNK_EVENTS = {"starting": "starting", "ready": "ready", "failed": "failed", "blocked": "blocked"}


def domain_resource(domain: str) -> dict[str, str]:
    return {"prefect.resource.id": f"pnr.domain.{domain}", "prefect.resource.name": domain, "pnr.domain": domain}


def _member_resource(kind: str, domain: str, name: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"pnr.{kind}.{domain}.{name}",
        "prefect.resource.name": name,
        "pnr.domain": domain,
        f"pnr.{kind}": name,
    }


def chunk_resource(domain: str, chunk: str) -> dict[str, str]:
    return _member_resource("chunk", domain, chunk)


def signal_resource(domain: str, signal: str) -> dict[str, str]:
    return _member_resource("signal", domain, signal)


def _related_domain(domain: str) -> list[dict[str, str]]:
    return [{**domain_resource(domain), "prefect.resource.role": "domain"}]


def emit(
    event: str,
    resource: dict[str, str],
    payload: dict[str, object] | None = None,
    related: list[dict[str, str]] | None = None,
) -> Event | None:
    """emit_event that never raises (events are observations, not control flow). Outside a run with no
    PREFECT_API_URL nothing is sent: Prefect would otherwise start a temporary server just for the event."""
    if not _may_emit():
        return None
    try:
        from prefect.events import emit_event

        return emit_event(event=event, resource=resource, related=related, payload=payload)
    except Exception as exc:  # an event is an observation: never let it break a run
        log.debug("pnr: could not emit %s: %s", event, exc)
        return None


def _may_emit() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None or bool(PREFECT_API_URL.value())


def emit_domain(domain: str, what: str, payload: dict[str, object] | None = None) -> Event | None:
    return emit(f"pnr.domain.{what}", domain_resource(domain), payload)


class RunEvents(RunObserver):
    """Emits the events of one bring-up and of its watch: `start()` subscribes to the run's control and store,
    `finish()` emits the bring-up's outcome, `close()` (after a watch) unsubscribes."""

    def __init__(
        self,
        plan: Plan,
        cpuxs: list[str],
        store: SignalStore,
        control: RunControl,
        config_path: str | None = None,
        chunk_events: bool = True,
    ) -> None:
        super().__init__(plan, cpuxs, store, control)
        self._bringing_up = False
        self._unsubscribe: list[Callable[[], None]] = []
        self._last_phase: dict[str, str] = {}
        # PNR_CHUNK_EVENTS of whoever asked for the run (bring_up reads the client's settings once)
        self._chunk_events = chunk_events
        # where the run came from, so an automation can act on it (e.g. run pnr-down with the same parameters)
        self.origin = {
            "config_path": str(Path(config_path).resolve()) if config_path else None,
            "runtime_dir": str(store.runtime_dir.resolve()),
        }

    def start(self) -> None:
        self._bringing_up = True
        self._unsubscribe = [self.store.subscribe(self._on_signal), self.control.listen(self._on_event)]
        emit_domain(
            self.domain,
            "up.started",
            {**self.origin, "cpuxs": self.cpuxs, "chunks": [n for c in self.cpuxs for n in self.plan.chunks_of(c)]},
        )

    def _on_signal(self, name: str, old: PnR, new: PnR) -> None:
        if self._bringing_up and not self._chunk_events:
            return
        resource = {**signal_resource(self.domain, name), "pnr.tv": new.tv}
        payload: dict[str, object] = {
            "old": old.model_dump(),
            "new": new.model_dump(),
            "consumers": self.plan.consumers.get(name, []),
        }
        if not self._bringing_up:
            payload["watch"] = True
        emit("pnr.signal.changed", resource, payload, _related_domain(self.domain))

    def _on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunNote) and event.what.startswith("watch."):
            emit(f"pnr.domain.{event.what}", domain_resource(self.domain), event.payload)
        elif isinstance(event, ProgressEvent) and event.what is not None:  # a watch transition
            policy = self.plan.domain.dependency_policy(self.plan.chunks[event.chunk])
            emit(
                f"pnr.chunk.{event.what}",
                {**chunk_resource(self.domain, event.chunk), "pnr.cpux": event.cpux},
                {"cpux": event.cpux, "policy": policy, "detail": event.detail},
                _related_domain(self.domain),
            )
        elif isinstance(event, ProgressEvent) and self._bringing_up and event.phase in CHUNK_EVENTS:
            if self._last_phase.get(event.chunk) == event.phase or not (
                self._chunk_events or event.phase in ("failed", "blocked")
            ):
                return
            self._last_phase[event.chunk] = event.phase
            resource = {**chunk_resource(self.domain, event.chunk), "pnr.cpux": event.cpux}
            emit(
                f"pnr.chunk.{CHUNK_EVENTS[event.phase]}",
                resource,
                {"cpux": event.cpux, "phase": event.phase, "detail": event.detail},
                _related_domain(self.domain),
            )

    def finish(self, error: BaseException | None = None) -> None:
        """The bring-up ended: its outcome. Watch transitions (if any follow) are still emitted until `close()`."""
        self._bringing_up = False
        if error is None:
            emit_domain(
                self.domain,
                "up.completed",
                {**self.origin, "signals": {k: v.tv for k, v in sorted(self.store.snapshot().items())}},
            )
        elif isinstance(error, Exception):
            emit_domain(self.domain, "up.failed", {**self.origin, "error": type(error).__name__, "message": str(error)})
        # BaseException (cancellation, Ctrl-C): the cancellation/crash hooks emit pnr.domain.up.cancelled

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
