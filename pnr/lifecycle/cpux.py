"""The scheduler of one CPUX run: PnR's intention loop as state that Prefect tasks drive.

    prepare()      before any container starts: env expanded, every engine answers, host ports free, images, network
    wait_gate()    a chunk waits (event-driven, one slice) for its gatekeeper; GateClosed → Prefect retries
    supervise()    until every chunk is final: aborts on a stall (a gate that can never open), the deadline, or
                   an engine in use that stops answering (pinged every ENGINE_PING_EVERY seconds)
    close() / outcome_error()   chunks that never started are marked blocked; the run's verdict

The chunks themselves are driven by `ChunkDriver` (pnr.lifecycle.chunk). Nothing here knows Prefect:
`pnr.prefect.flows` wraps `wait_gate` and the driver in tasks and runs `supervise`.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pnr.engines import EngineSet, host_port_clashes, image_ref, not_ours, other_configs
from pnr.exceptions import (
    BlockedChunk,
    ChunkFailed,
    ConfigError,
    ConfigIssue,
    EngineError,
    ImageError,
    RunError,
    RunTimeout,
    StallError,
)
from pnr.lifecycle.chunk import ChunkDriver
from pnr.lifecycle.control import Prepared, PreparingAhead
from pnr.lifecycle.state import ChunkResult, CpuxState, Phase
from pnr.model import PNR_ITSELF, Plan
from pnr.runtime import SignalStore

ENGINE_PING_EVERY = 1.0  # seconds between pings of the engines in use while a run is supervised


class GateClosed(Exception):
    """The chunk's gate is not open yet: the task raises this so Prefect retries it (waiting is visible)."""


class ChunkBlocked(Exception):
    """The run was aborted while this chunk waited (stall or timeout)."""


GATE_SLICE_MAX = 300.0  # the longest single gate-wait attempt: a waiting chunk still shows a retry every 5 min


def gate_slice(first: float, attempt: int) -> float:
    """The wait of gate attempt `attempt` (1, 2, ...): `first`, doubling each retry, at most GATE_SLICE_MAX (or
    `first` if larger). Each retry is a few task-run states and events for Prefect's server to record: a chunk
    that waits 2 minutes retries 4 times instead of 12 (at 500 chunks, thousands of states fewer)."""
    return max(first, min(first * 2.0 ** (attempt - 1), GATE_SLICE_MAX))


def gate_attempts(first: float, seconds: float) -> int:
    """How many gate attempts (see `gate_slice`) cover a wait of `seconds`."""
    attempts, covered = 1, gate_slice(first, 1)
    while covered < seconds:
        attempts += 1
        covered += gate_slice(first, attempts)
    return attempts


def by_engine(plan: Plan, names: list[str], engines: EngineSet) -> dict[str, list[str]]:
    """`names` by the name of the engine they run on."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(engines.name_of(plan.chunks[name]), []).append(name)
    return out


def other_config_error(
    domain: str, config_path: str, others: dict[str, int], fix: str, config_file: str | None = None
) -> ConfigError:
    """A domain's containers were made from another config file than `config_path`: what to do (`fix`)."""
    files = ", ".join(f"{path} ({n} container{'s' * (n != 1)})" for path, n in sorted(others.items()))
    this = config_file or str(Path(config_path).resolve())
    message = (
        f"domain {domain!r} was brought up from another config file: {files}; this is {this}. "
        f"Two configs share the domain name: {fix}, or give one of them another domain name"
    )
    return ConfigError(config_path, [ConfigIssue("name", message)])


def prepare_engines(
    plan: Plan,
    names: list[str],
    engines: EngineSet,
    base_dir: Path,
    build: bool,
    config_path: str | None = None,
    take_over: bool = False,
) -> Prepared:
    """Every engine of the run answers (pinged in parallel: the first CPUX's preparation checks the engines of
    every CPUX of the bring-up); host ports free, images present and the domain network made on each engine
    the chunks `names` use. Raises before starting anything. Notes the chunks whose container name is free (one
    listing per engine): they are created without an inspect first — at 500 chunks, 500 engine calls fewer
    while the engine is busiest (a name taken meanwhile falls back to the inspect). `config_path`: the domain's
    containers must have been made from this file (ConfigError otherwise) unless `take_over`."""
    domain = plan.domain.name
    engines.ping_all()
    groups = by_engine(plan, names, engines)
    listed = {name: engines[name].container_names() for name in groups}
    if config_path is not None and not take_over:
        _refuse_other_config(domain, config_path, [labels for e in listed.values() for _id, labels in e.values()])
    taken = []
    for name, chunks in groups.items():
        try:
            host_port_clashes(engines[name], domain, [plan.chunks[n] for n in chunks])
        except EngineError as exc:
            taken.append(str(exc) if len(groups) == 1 else f"{engines.describe(name)}:\n{exc}")
    absent: set[str] = set()
    for name, chunks in groups.items():  # a name another owner holds: refused before anything starts
        present = listed[name]
        for n in chunks:
            cname = plan.chunks[n].container.name
            if cname not in present:
                absent.add(n)
                continue
            refusal = not_ours(present[cname][1], present[cname][0], domain=domain, chunk=n, container=cname)
            if refusal:
                taken.append(f"chunk {n}: {refusal}")
    if taken:
        raise EngineError("\n".join(taken))
    images = _images(plan, names, engines, base_dir, build)
    for name in groups:  # last: a missing image leaves nothing behind
        engines[name].ensure_network(domain)
    return images, absent


def _refuse_other_config(domain: str, config_path: str, labels: list[dict[str, str]]) -> None:
    this = str(Path(config_path).resolve())
    others = other_configs(labels, domain, this)
    if others:
        first = sorted(others)[0]
        fix = f"bring it down with `pnr down {first}` first, take it over with `pnr up --force-recreate`"
        raise other_config_error(domain, config_path, others, fix, this)


def _images(plan: Plan, names: list[str], engines: EngineSet, base_dir: Path, build: bool) -> dict[str, str]:
    """The image id of each chunk (looked up, built or pulled); ImageError naming every image missing."""
    domain = plan.domain.name
    images: dict[str, str] = {}
    pulled: dict[tuple[str, str], str] = {}  # (engine, image): one look per image, not per chunk (500 → 1)
    missing: list[str] = []  # every image that cannot be had, said at once
    for name in names:
        chunk = plan.chunks[name]
        key = (engines.name_of(chunk), image_ref(domain, chunk))
        try:
            if chunk.container.build_path:  # a build of its own
                images[name] = engines.of(chunk).ensure_image(domain, chunk, base_dir, build=build)
                continue
            if key not in pulled:
                pulled[key] = engines.of(chunk).ensure_image(domain, chunk, base_dir, build=build)
            images[name] = pulled[key]
        except ImageError as exc:
            missing.append(str(exc))
            pulled[key] = ""  # the same image for another chunk: said once
    if missing:
        raise ImageError("\n".join(missing))
    return images


def start_preparing(
    plan: Plan, cpux: str, engines: EngineSet, config_path: str, build: bool, take_over: bool = False
) -> Future[Prepared]:
    """`prepare_engines` for `cpux` in a thread of its own, now: the engine work (ping, images, network: ~0.1 s
    on a quiet engine) overlaps the creation of the CPUX's subflow run instead of following it."""
    future: Future[Prepared] = Future()
    base_dir = Path(config_path).resolve().parent

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(
                prepare_engines(plan, plan.chunks_of(cpux), engines, base_dir, build, config_path, take_over)
            )
        except BaseException as exc:  # raised where the CPUX's prepare task waits for it
            future.set_exception(exc)

    threading.Thread(target=work, name=f"pnr-prepare-{cpux}", daemon=True).start()
    return future


def prepare_ahead(
    plan: Plan, cpuxs: list[str], engines: EngineSet, config_path: str, take_over: bool = False
) -> PreparingAhead:
    """`start_preparing` for the first of `cpuxs`, as a `PreparingAhead` the flow takes over. Not for `--build`:
    a build's output belongs to the flow run's `prepare` task."""
    preparing = start_preparing(plan, cpuxs[0], engines, config_path, build=False, take_over=take_over)
    return PreparingAhead(cpuxs[0], take_over, engines, preparing)


class CpuxRun(CpuxState):
    """One CPUX bring-up: its state, a driver per chunk, and the loop that decides stall and timeout."""

    def __init__(self, *, gate_slice: float = 10.0, **state: Any) -> None:
        """`state`: the keyword arguments of `CpuxState` (plan, cpux, store, engine, config_path, ...)."""
        super().__init__(**state)
        self.gate_slice = gate_slice
        self.drivers = {name: ChunkDriver(self, name) for name in self.names}
        self._prepared: Future[dict[str, str]] | None = None  # under way since head_start

    def head_start(self, build: bool = False, early: Future[Prepared] | None = None) -> None:
        """Prepare (`prepare`), then start the container of every chunk whose gate holds already, each in a thread
        of its own, while the caller goes on (pnr's flow: Prefect creates the CPUX's subflow run, ~0.3 s of API
        calls that would otherwise come before the first container). `prepare` then returns what this prepared
        (or raises its error); each chunk's `bring_up` carries on from its started container. The threads run
        in the caller's context (Prefect's run context: the events they cause belong to the run)."""
        prepared: Future[dict[str, str]] = Future()
        self._prepared = prepared
        context = contextvars.copy_context()

        def work() -> None:
            try:
                images = self._prepare(build, early)
            except BaseException as exc:  # raised where the CPUX's prepare task asks for it
                prepared.set_exception(exc)
                return
            # claimed before `prepare` returns: a chunk's task calls `bring_up` only after it, and must find the
            # start under way rather than start the container a second time
            starts = (
                []
                if self.aborted or self.control.interrupted
                else [
                    (name, self.drivers[name].claim_early())
                    for name in self.names
                    if self.store.holds(self.plan.chunks[name].gatekeeper)
                ]
            )
            prepared.set_result(images)
            for name, start in starts:
                run = contextvars.copy_context().run
                threading.Thread(target=run, args=(start,), name=f"pnr-start-{name}", daemon=True).start()

        threading.Thread(target=context.run, args=(work,), name=f"pnr-head-start-{self.cpux}", daemon=True).start()

    # -- preparation: before any container starts --------------------------------------------------
    def prepare(self, build: bool = False, early: Future[Prepared] | None = None) -> dict[str, str]:
        """Env expanded, then the engines prepared (`prepare_engines`; `early`: already under way since the
        bring-up began, see `start_preparing`; or all of it under way since `head_start`). Raises before
        starting anything."""
        if self._prepared is not None:
            return self._prepared.result()
        return self._prepare(build, early)

    def _prepare(self, build: bool, early: Future[Prepared] | None) -> dict[str, str]:
        for driver in self.drivers.values():
            driver.env()
        images, absent = (
            early.result()
            if early is not None
            else prepare_engines(
                self.plan, self.names, self.engines, self.base_dir, build, self.config_path, self.force_recreate
            )
        )
        self.images.update(images)
        self.absent |= absent
        return dict(self.images)

    def chunks_by_engine(self) -> dict[str, list[str]]:
        """This CPUX's chunks by the name of the engine they run on."""
        return by_engine(self.plan, self.names, self.engines)

    def announce(self) -> None:
        """Report every chunk whose gate is closed as waiting, with what it waits on (once, at the start)."""
        for name in self.names:
            gate = self.plan.chunks[name].gatekeeper
            if not self.store.holds(gate):
                self.set_phase(name, Phase.WAITING, f"waits on {self.unmet_text(gate)}")

    # -- a chunk's gate ---------------------------------------------------------------------------
    def wait_gate(self, chunk: str) -> None:
        """Block (event-driven) for the gate, one slice per attempt; GateClosed lets Prefect retry (visible
        waiting). Slices double (see `gate_slice`): a long wait costs a few retries, not one every `gate_slice`
        seconds. A slice in which the domain's signals changed is followed by another in the same attempt: the
        run is moving, and a retry (task-run states, an event and a log line for the server to record) would
        say nothing new. So a retry marks a slice in which nothing changed: a wait on a person or a stuck chunk."""
        gate = self.plan.chunks[chunk].gatekeeper
        self.progress[chunk].gate_checks += 1
        seconds = gate_slice(self.gate_slice, self.progress[chunk].gate_checks)
        while True:
            seen = self.store.changes
            slice_end = min(time.monotonic() + seconds, self.deadline + 1)
            self.store.wait(
                lambda: self.aborted or self.store.holds(gate), max(0.0, slice_end - time.monotonic()), signals=gate
            )
            if self.aborted:
                self.set_phase(chunk, Phase.BLOCKED, self._blocked_detail(chunk))
                raise ChunkBlocked(f"{chunk} did not start: {self.abort_error}")
            if self.store.holds(gate):
                return
            if self.store.changes == seen or time.monotonic() >= self.deadline:
                raise GateClosed(f"{chunk} waits on {self.unmet_text(gate)}")

    def should_retry(self, chunk: str) -> bool:
        return not self.aborted and self.progress[chunk].phase == Phase.WAITING

    # -- the loop ---------------------------------------------------------------------------------
    def supervise(self, poll: float = 0.1, done: Callable[[], bool] | None = None) -> None:
        """Watch until every chunk is final; abort on stall, deadline or a lost engine. Reads external files
        every `poll`. It wakes on every phase change: while chunks start or probe, a wake-up costs O(1) (the
        phase counts; `done` must be as cheap), so a large run does not pay O(chunks) per phase change."""
        next_ping = time.monotonic() + ENGINE_PING_EVERY
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if now >= next_poll:  # external files change on their own clock, not with the phases
                self.store.refresh()
                self.flush()
                next_poll = now + poll
            if self.all_final or (done is not None and done()):
                return
            if self.aborted:
                return
            if now >= next_ping:
                lost = self.engines.unreachable(self.chunks_by_engine())
                if lost:
                    name, why = next(iter(lost.items()))
                    self.engine_lost(name, why)
                    return
                next_ping = time.monotonic() + ENGINE_PING_EVERY
            blocked = self.find_stall()
            if blocked:
                self.abort(StallError(self._stall_message(blocked)))
                return
            if now > self.deadline:
                self.abort(RunTimeout(self._timeout_message()))
                return
            self.phase_changed.wait(poll)  # a phase change, or the poll (external files, the deadline)
            self.phase_changed.clear()

    def find_stall(self) -> list[BlockedChunk]:
        """Chunks whose gate can never open, when nothing is starting or probing; else []. A chunk that waits on
        a chunk that can never start can never start either: it is listed too."""
        if self.any_active:
            return []
        waiting = {
            name: self.store.unmet(self.plan.chunks[name].gatekeeper)
            for name, prog in self.progress.items()
            if prog.phase == Phase.WAITING
        }
        blocked: set[str] = set()
        grew = True
        while grew:
            grew = False
            for name, unmet in waiting.items():
                if name not in blocked and any(self._signal_is_dead(s, blocked) for s in unmet):
                    blocked.add(name)
                    grew = True
        return [
            BlockedChunk(name, unmet, [s for s in unmet if s in self.plan.external])
            for name, unmet in waiting.items()
            if name in blocked
        ]

    def _signal_is_dead(self, signal: str, blocked: set[str]) -> bool:
        producers = self.plan.producers.get(signal, [])
        if not producers:
            return False  # external: someone may still set it (bounded by the timeout)
        return all(
            p == PNR_ITSELF or p not in self.progress or self.progress[p].phase.final or p in blocked for p in producers
        )

    def _stall_message(self, blocked: list[BlockedChunk]) -> str:
        lines = [f"execution stalled in cpux {self.cpux}: nothing is running and these chunks can never start:"]
        never = {b.chunk for b in blocked}
        lines += ["  " + b.render() + self._producer_note(list(b.waits_on), never) for b in blocked]
        return "\n".join(lines)

    def _producer_note(self, signals: list[str], never: set[str]) -> str:
        notes: dict[str, str] = {}
        for sig in signals:
            for prod in self.plan.producers.get(sig, []):
                if prod in self.progress and self.progress[prod].phase == Phase.FAILED:
                    notes[prod] = f"{prod} failed"
                elif prod in never:
                    notes[prod] = f"{prod} can never start"
        return f" ({'; '.join(notes[p] for p in sorted(notes))})" if notes else ""

    def _timeout_message(self) -> str:
        lines = [f"timed out after {self.timeout_seconds:g}s in cpux {self.cpux}; still not completed:"]
        externals: set[str] = set()
        for name, prog in self.progress.items():
            if prog.phase.final:
                continue
            unmet = self.store.unmet(self.plan.chunks[name].gatekeeper) if prog.phase == Phase.WAITING else {}
            lines.append("  " + (BlockedChunk(name, unmet).render() if unmet else f"{name} is {prog.phase.value}"))
            externals |= {s for s in unmet if s in self.plan.external}
        for sig in sorted(externals):
            lines.append(
                f"  external signal {sig} never came; set it with: "
                f"pnr signal set {self.config_path} {sig} --tv {self._wanted(sig)}{self.plan.near_miss(sig)}"
            )
        return "\n".join(lines)

    def _wanted(self, signal: str) -> str:
        for name in self.plan.consumers.get(signal, []):
            return self.plan.chunks[name].gatekeeper[signal].tv
        return "Y"

    def close(self) -> None:
        """After the tasks ended: chunks that never left WAITING (e.g. Prefect never ran them because an
        upstream task failed) are marked blocked, so status and artifacts tell the truth."""
        for name, prog in self.progress.items():
            if not prog.phase.final:
                self.set_phase(name, Phase.BLOCKED, f"never started: {self._blocked_detail(name)}")
        self.flush(force=True)

    def _blocked_detail(self, name: str) -> str:
        """One line for a chunk that did not start: what its gate waits on, and why the run gave up."""
        unmet = self.store.unmet(self.plan.chunks[name].gatekeeper)
        reason = "an upstream chunk failed"
        if self.abort_error is not None:
            head = str(self.abort_error).splitlines()[0] if str(self.abort_error) else type(self.abort_error).__name__
            # the headline of a list ("execution stalled in cpux c: ... these chunks can never start:") without it
            reason = re.split(r"[:;]", head, maxsplit=1)[0] if head.endswith(":") else head
        if not unmet:
            return reason
        waits = BlockedChunk(name, unmet).render().removeprefix(name + " ")
        return f"{waits} ({reason})" if self.abort_error is not None else waits

    def outcome_error(self) -> Exception | None:
        """The run's failure, if any: the abort reason, else the failed chunks."""
        failed = [p for p in self.progress.values() if p.phase == Phase.FAILED]
        if self.abort_error is not None:
            if failed and isinstance(self.abort_error, StallError):
                details = "\n".join(f"  {p.name} failed: {p.detail}" for p in failed)
                return StallError(f"{self.abort_error}\n{details}")
            return self.abort_error
        if failed:
            return ChunkFailed("\n".join(f"{p.name} failed: {p.detail}" for p in failed))
        unfinished = [p for p in self.progress.values() if p.phase != Phase.READY]
        if unfinished:  # never report success for a chunk that did not come up, whatever the reason
            return RunError(
                "\n".join(f"{p.name} did not complete: {p.phase.value} {p.detail}".rstrip() for p in unfinished)
            )
        return None

    def results(self) -> dict[str, ChunkResult]:
        return {
            n: {
                "phase": p.phase.value,
                "container": p.container,
                "container_id": p.container_id,
                "action": p.action,
                "created_at": p.created_at,
                "started_at": p.started_at,
                "first_probe_at": p.first_probe_at,
                "ready_at": p.ready_at,
            }
            for n, p in self.progress.items()
        }


def domain_runs(plan: Plan, store: SignalStore, engines: EngineSet, config_path: str, **options: Any) -> list[CpuxRun]:
    """One CpuxRun per CPUX of the domain, in start order, over one store and engine set (`options`: the other
    keyword arguments of `CpuxRun`, e.g. timeout_seconds, control, force_recreate)."""
    return [
        CpuxRun(plan=plan, cpux=cpux, store=store, engine=engines, config_path=config_path, **options)
        for cpux in plan.cpux_order
    ]
