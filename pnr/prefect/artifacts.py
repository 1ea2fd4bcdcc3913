"""Prefect artifacts of a bring-up, under keys that are stable per domain so their history accumulates in the UI:

| key                        | kind     | what                                                                 |
|----------------------------|----------|----------------------------------------------------------------------|
| `pnr-<domain>-plan`        | markdown | the signal graph as a mermaid flowchart, and the start levels         |
| `pnr-<domain>-progress`    | progress | percent of chunks ready, updated as chunks become ready (see below)   |
| `pnr-<domain>-signals`     | table    | final truth value of every signal                                     |
| `pnr-<domain>-timeline`    | markdown | a Gantt chart (SVG) and created → started → probe → ready; ★ critical path |

`RunArtifacts` is driven by `pnr.prefect.flows.bring_up`; outside a Prefect flow run it does nothing (no API calls,
no warnings). A failing artifact call is logged at debug level and never fails or stalls the run.

The progress artifact is updated at most every 0.5 s, and at most every chunks/100 s in a bigger domain (5 s at
most): each update is an API call and an event the server records, and at a few hundred chunks the updates cost
the server more than the chunks' own task runs.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from pnr.lifecycle import ChunkProgress, CpuxRun, Phase, ProgressEvent, RunControl, timeline
from pnr.model import Plan, PnR
from pnr.prefect.observer import RunObserver
from pnr.records import RunEvent
from pnr.runtime import SignalStore

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"[^a-z0-9-]+")
PROGRESS_EVERY = 0.5  # seconds between updates of the progress artifact while chunks become ready ...
PROGRESS_CHUNKS_PER_SECOND = 100  # ... or chunks/100 seconds in a bigger domain
PROGRESS_EVERY_MAX = 5.0
T = TypeVar("T")


def progress_interval(chunks: int) -> float:
    """Seconds between two updates of the progress artifact of a bring-up of `chunks` chunks."""
    return min(PROGRESS_EVERY_MAX, max(PROGRESS_EVERY, chunks / PROGRESS_CHUNKS_PER_SECOND))


def artifact_key(domain: str, what: str) -> str:
    """`pnr-<domain>-<what>` in the alphabet Prefect allows for keys (lowercase letters, digits, dashes)."""
    slug = _KEY_RE.sub("-", f"pnr-{domain}-{what}".lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug)


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and ctx.flow_run is not None


def _quietly(what: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as exc:  # artifacts are a view: never let them break a run
        log.debug("pnr: could not publish %s artifact: %s", what, exc)
        return None


# -- pure renderers (unit-testable) -----------------------------------------------------------------


def plan_markdown(plan: Plan, cpuxs: list[str]) -> str:
    lines = [f"# Plan of domain `{plan.domain.name}`", "", "```mermaid", plan.render_mermaid(), "```", ""]
    lines += ["| cpux | level | chunk | waits on | produces |", "|---|---|---|---|---|"]
    for cpux in cpuxs:
        for i, level in enumerate(plan.levels[cpux]):
            for name in level:
                chunk = plan.chunks[name]
                gates = ", ".join(f"`{s}={p.tv}`" for s, p in chunk.gatekeeper.items()) or "-"
                outs = ", ".join(f"`{s}`" for s in chunk.flowout) or "-"
                lines.append(f"| {cpux} | {i} | **{name}** | {gates} | {outs} |")
    if plan.external:
        lines += [
            "",
            "External signals (set from outside, e.g. `pnr signal set`): " + ", ".join(f"`{s}`" for s in plan.external),
        ]
    return "\n".join(lines) + "\n"


def signals_table(state: Mapping[str, PnR], plan: Plan) -> list[dict[str, str]]:
    names = sorted(set(state) | set(plan.producers) | set(plan.consumers))
    rows = []
    for name in names:
        value = state.get(name)
        rows.append(
            {
                "signal": name,
                "tv": value.tv if value is not None else "U",
                "response": ", ".join(value.response) if value is not None else "",
                "prompt": value.prompt if value is not None else "",
                "produced by": ", ".join(plan.producers.get(name, [])) or "(external)",
                "waited on by": ", ".join(plan.consumers.get(name, [])),
            }
        )
    return rows


def critical_path(plan: Plan, progress: dict[str, ChunkProgress]) -> list[str]:
    """The chain of chunks that decided when the last chunk was ready (see `pnr.lifecycle.timeline`)."""
    ready = {n: p.ready_at for n, p in progress.items() if p.ready_at is not None}
    return timeline.critical_path(plan.depends_on, ready)


def timeline_image(plan: Plan, progress: dict[str, ChunkProgress]) -> str:
    """The Gantt chart of the run (`pnr.lifecycle.timeline`) as a data: URI."""
    svg = timeline.timeline_svg(progress, plan.depends_on, title=f"readiness timeline of {plan.domain.name}")
    return timeline.svg_data_uri(svg)


def _secs(a: float | None, b: float | None) -> str:
    return f"{b - a:.2f}" if a is not None and b is not None else "-"


def timeline_markdown(plan: Plan, progress: dict[str, ChunkProgress]) -> str:
    """Per chunk: offsets from the run's start and the duration of each stage; ★ marks the critical path."""
    if not progress:
        return f"# Readiness timeline of `{plan.domain.name}`\n\nNo chunk ran.\n"
    t0 = min(p.created_at for p in progress.values())
    crit = critical_path(plan, progress)

    def at(t: float | None) -> str:
        return f"{t - t0:.2f}" if t is not None else "-"

    lines = [
        f"# Readiness timeline of `{plan.domain.name}`",
        "",
        (
            "Seconds from the start of the run. *wait* = created → started (gate closed), *start* = started → first "
            "probe, *probe* = first probe → ready. "
            "★ = critical path (the chain that decided when the last chunk was ready)."
        ),
        "",
        # the picture: a markdown image with a data: URI (the UI's markdown drops an inline <svg>, draws this)
        f"![readiness timeline of {plan.domain.name}]({timeline_image(plan, progress)})",
        "",
        "| | chunk | cpux | phase | created | started | first probe | ready | wait | start | probe | total |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(progress.values(), key=lambda p: (p.ready_at is None, p.ready_at or 0, p.started_at or 0, p.name))
    for p in order:
        star = "★" if p.name in crit else ""
        name = f"**{p.name}**" if star else p.name
        phase = p.phase.value if isinstance(p.phase, Phase) else str(p.phase)
        lines.append(
            f"| {star} | {name} | {p.cpux} | {phase} | {at(p.created_at)} | {at(p.started_at)} | "
            f"{at(p.first_probe_at)} | "
            f"{at(p.ready_at)} | {_secs(p.created_at, p.started_at)} | {_secs(p.started_at, p.first_probe_at)} | "
            f"{_secs(p.first_probe_at, p.ready_at)} | {_secs(p.created_at, p.ready_at)} |"
        )
    if crit:
        last = progress[crit[-1]].ready_at
        lines += ["", f"Critical path: {' → '.join(crit)} ({_secs(t0, last)} s to the last ready chunk)."]
    failed = [p for p in order if p.phase in (Phase.FAILED, Phase.BLOCKED)]
    for p in failed:
        lines.append(f"\n`{p.name}` {p.phase.value}: {p.detail.splitlines()[0] if p.detail else ''}")
    return "\n".join(lines) + "\n"


# -- the per-run publisher --------------------------------------------------------------------------


class _Background:
    """One daemon thread that runs API calls in the flow's Prefect context, so a chunk never waits on the UI."""

    def __init__(self) -> None:
        self._context = contextvars.copy_context()  # settings/client of the flow run (threads do not inherit them)
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="pnr-artifacts", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._context.run(job)

    def submit(self, job: Callable[[], object]) -> None:
        self._jobs.put(job)

    def close(self, timeout: float = 15.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


@dataclass
class _Progress:
    artifact_id: UUID | None = None
    done: int = 0
    total: int = 0
    last: str = ""  # the chunk that became ready last
    queued: bool = False  # an update is queued: it sends the latest count when its turn comes
    sent_at: float = float("-inf")  # monotonic time of the last update sent


class RunArtifacts(RunObserver):
    """Publishes the artifacts of one bring-up. Call `start()` in the flow and `finish()` after its CPUX runs."""

    def __init__(self, plan: Plan, cpuxs: list[str], store: SignalStore, control: RunControl) -> None:
        super().__init__(plan, cpuxs, store, control)
        self.enabled = False
        self._progress = _Progress(total=sum(len(plan.chunks_of(c)) for c in cpuxs))
        self._counted: set[str] = set()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._background: _Background | None = None
        self._finishing = threading.Event()  # finish(): a queued update goes at once (the final one follows)
        self._start_queued = False  # the plan and progress artifacts are queued (see _queue_start)

    def key(self, what: str) -> str:
        return artifact_key(self.domain, what)

    def start(self) -> None:
        self.enabled = in_flow_run()
        if not self.enabled:
            return
        self._background = _Background()
        self._unsubscribe = self.control.listen(self._on_phase)

    def _publish_start(self) -> None:
        """The plan and the progress artifacts (in the background thread, before any progress update)."""
        from prefect.artifacts import create_markdown_artifact, create_progress_artifact

        _quietly(
            "plan",
            lambda: create_markdown_artifact(
                plan_markdown(self.plan, self.cpuxs), key=self.key("plan"), description=f"signal graph of {self.domain}"
            ),
        )
        created = _quietly(
            "progress",
            lambda: create_progress_artifact(
                0.0, key=self.key("progress"), description=f"{self.domain}: 0/{self._progress.total} chunks ready"
            ),
        )
        self._progress.artifact_id = created if isinstance(created, UUID) else None  # called in sync: a UUID

    def _queue_start(self) -> None:
        """Queue the first artifacts once: when a chunk first reports more than its start (its CPUX's subflow run
        exists by then), or at the end of a run that never got that far. Not earlier: each is an API write, and
        every call before the first container starts is time every `pnr up` waits (six runs at once queue at the
        one server); a write beside the subflow run's creation also made a SQLite server (Prefect's own, without
        pnr's IMMEDIATE transactions) stall that creation for ~2 s, intermittently."""
        with self._lock:
            if self._start_queued:
                return
            self._start_queued = True
        background = self._background
        if background is not None:
            background.submit(self._publish_start)

    def _on_phase(self, event: RunEvent) -> None:
        if not isinstance(event, ProgressEvent):
            return
        if not self._start_queued and event.phase != Phase.STARTING.value:  # a start may precede the subflow run
            self._queue_start()
        if event.phase != Phase.READY.value or event.what is not None:
            return
        with self._lock:
            if event.chunk in self._counted:
                return
            self._counted.add(event.chunk)
            self._progress.done += 1
            self._progress.last = event.chunk
            if self._progress.queued:  # the queued update will carry this count too
                return
            self._progress.queued = True
        background = self._background
        if background is not None:  # the chunk's thread goes on at once; the UI hears of it a moment later
            background.submit(self._send_progress)

    def _send_progress(self) -> None:
        """One update with the latest count, at most every `progress_interval` seconds: at 500 chunks, one update
        per ready chunk was 500 API calls and 500 events for the server to record, for a percentage."""
        pause = self._progress.sent_at + progress_interval(self._progress.total) - time.monotonic()
        if pause > 0:
            self._finishing.wait(pause)
        with self._lock:
            self._progress.queued = False
            done, total, last = self._progress.done, self._progress.total, self._progress.last
        self._progress.sent_at = time.monotonic()
        self._update_progress(done, total, f"{self.domain}: {done}/{total} chunks ready (last: {last})")

    def _update_progress(self, done: int, total: int, description: str) -> None:
        artifact_id = self._progress.artifact_id
        if artifact_id is None:
            return
        from prefect.artifacts import update_progress_artifact

        percent = 100.0 * done / total if total else 100.0
        _quietly("progress", lambda: update_progress_artifact(artifact_id, percent, description=description))

    def finish(self, error: BaseException | None = None, runs: dict[str, CpuxRun] | None = None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._background is not None:
            self._queue_start()  # a run that ended before its first chunk reported: its plan still shows
            self._finishing.set()
            self._background.close()  # every queued update first, so the final one is the last word
            self._background = None
        if not self.enabled:
            return
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        self.store.refresh()
        outcome = (
            "up"
            if error is None
            else f"failed: {type(error).__name__}"
            if isinstance(error, Exception)
            else "cancelled"
        )
        done, total = self._progress.done, self._progress.total
        self._update_progress(done, total, f"{self.domain}: {done}/{total} chunks ready; {outcome}")
        _quietly(
            "signals",
            lambda: create_table_artifact(
                signals_table(self.store.snapshot(), self.plan),
                key=self.key("signals"),
                description=f"final truth values of {self.domain} ({outcome})",
            ),
        )
        progress = {n: p for run in (runs or {}).values() for n, p in run.progress.items()}
        _quietly(
            "timeline",
            lambda: create_markdown_artifact(
                timeline_markdown(self.plan, progress),
                key=self.key("timeline"),
                description=f"readiness timeline of {self.domain} ({outcome})",
            ),
        )
