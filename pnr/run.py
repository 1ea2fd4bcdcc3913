"""One run of a CPUX: the intention loop of the seed, as state that Prefect tasks drive.

`CpuxRun` owns the per-chunk phases, opens gates, starts containers (through the engine), records probe
outcomes in the signal store, and decides when the run is stalled or timed out. It knows nothing about
Prefect: `pnr.flows` wraps `wait_gate`/`bring_up_chunk`/`probe_chunk` in tasks and runs `supervise`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pnr.config import DesignChunk, PnR
from pnr.converge import config_hash, decide, desired_state, spec_label
from pnr.engine import LABEL_CHUNK, LABEL_DOMAIN, ContainerState, Engine
from pnr.exceptions import (
    BlockedChunk,
    ChunkFailed,
    ConfigError,
    ConfigIssue,
    EngineError,
    PnrError,
    RunError,
    RunTimeout,
    StallError,
)
from pnr.plan import PNR_ITSELF, Plan
from pnr.probes import Aborted, ContainerGone, ProbeContext, ProbeResult, make_probe
from pnr.signals import META_DIR, SignalStore, atomic_write_json

LOG_TAIL_LINES = 15
PERSIST_EVERY = 0.25  # seconds between writes of the chunk-state file during a run


class Phase(str, Enum):
    WAITING = "waiting"
    STARTING = "starting"
    PROBING = "probing"
    READY = "ready"
    FAILED = "failed"
    BLOCKED = "blocked"  # aborted while waiting: its gate can never open, or the run timed out
    LOST = "lost"  # watch mode: was ready, its probe regressed (see pnr.watch)

    @property
    def active(self) -> bool:
        return self in (Phase.STARTING, Phase.PROBING)

    @property
    def final(self) -> bool:
        return self in (Phase.READY, Phase.FAILED, Phase.BLOCKED)


@dataclass
class ChunkProgress:
    name: str
    cpux: str
    phase: Phase = Phase.WAITING
    container: str | None = None
    container_id: str | None = None
    action: str | None = None  # created | reused | recreated
    detail: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    first_probe_at: float | None = None
    ready_at: float | None = None
    gate_checks: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        return data


@dataclass(frozen=True)
class ProgressEvent:
    domain: str
    cpux: str
    chunk: str
    phase: Phase
    detail: str
    at: float


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> Callable[[], None]:
    """Receive every chunk phase change in this process (the CLI renders them). Returns an unsubscribe."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


class GateClosed(Exception):
    """The chunk's gate is not open yet: the task raises this so Prefect retries it (waiting is visible)."""


class ChunkBlocked(Exception):
    """The run was aborted while this chunk waited (stall or timeout)."""


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(chunk: DesignChunk, path: str, environ: dict[str, str] | None = None, source: str = "<config>") -> dict[str, str]:
    """Container env with `${VAR}` / `${VAR:-default}` taken from the host environment (secrets stay out of configs)."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    missing: list[ConfigIssue] = []
    for key, value in chunk.container.env_map().items():
        def sub(m: re.Match[str]) -> str:
            if m.group(1) in environ:
                return environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            missing.append(ConfigIssue(f"{path}.container.env.{key}", f"host environment variable {m.group(1)!r} is not set; export it or write ${{{m.group(1)}:-default}}"))
            return ""
        out[key] = _VAR_RE.sub(sub, value)
    if missing:
        raise ConfigError(source, missing)
    return out


class CpuxRun:
    """The live state of one CPUX bring-up."""

    def __init__(
        self, *, plan: Plan, cpux: str, store: SignalStore, engine: Engine, config_path: str,
        timeout_seconds: float, flow_run_id: str = "local", gate_slice: float = 10.0, force_recreate: bool = False,
    ) -> None:
        self.force_recreate = force_recreate
        self.plan = plan
        self.domain = plan.domain.name
        self.cpux = cpux
        self.store = store
        self.engine = engine
        self.config_path = config_path
        self.base_dir = Path(config_path).resolve().parent
        self.flow_run_id = flow_run_id
        self.gate_slice = gate_slice
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.names = plan.chunks_of(cpux)
        self.progress = {n: ChunkProgress(n, cpux) for n in self.names}
        self.images: dict[str, str] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.abort_error: Exception | None = None
        self._lock = threading.Lock()
        self._state_file = store.runtime_dir / META_DIR / f"{self.domain}.chunks.json"
        self._dirty = True
        self._persisted_at = 0.0

    # -- bookkeeping -----------------------------------------------------------------------------
    @property
    def aborted(self) -> bool:
        return self.abort_error is not None

    def set_phase(self, chunk: str, phase: Phase, detail: str = "", **fields: Any) -> None:
        prog = self.progress[chunk]
        with self._lock:
            prog.phase = phase
            prog.detail = detail
            for key, value in fields.items():
                setattr(prog, key, value)
            self._dirty = True
        if time.monotonic() - self._persisted_at > PERSIST_EVERY:
            self.flush()
        event = ProgressEvent(self.domain, self.cpux, chunk, phase, detail, time.time())
        for listener in _listeners:
            try:
                listener(event)
            except Exception:  # a broken renderer must not break the run
                pass
        self.store.poke()

    def flush(self) -> None:
        """Write chunk states for `pnr status` if they changed (at most every PERSIST_EVERY while running:
        rewriting the file on every phase change would cost O(chunks²) in a large domain)."""
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            self._persisted_at = time.monotonic()
            self._persist()

    def _persist(self) -> None:
        existing: dict[str, Any] = {}
        try:
            existing = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            existing = {}
        chunks = existing.get("chunks", {}) if isinstance(existing, dict) else {}
        chunks.update({n: p.to_json() for n, p in self.progress.items()})
        atomic_write_json(self._state_file, {"domain": self.domain, "pid": os.getpid(), "flow_run_id": self.flow_run_id, "chunks": chunks})

    def abort(self, error: Exception) -> None:
        if self.abort_error is None:
            self.abort_error = error
        self.store.poke()

    # -- preparation: before any container starts --------------------------------------------------
    def prepare(self, build: bool = False) -> dict[str, str]:
        """Engine reachable, env expanded, network made, every image present. Raises before starting anything."""
        for name in self.names:
            self.env_of(name)
        self.engine.ping()
        self.check_host_ports()
        for name in self.names:
            self.images[name] = self.engine.ensure_image(self.domain, self.plan.chunks[name], self.base_dir, build=build)
        self.engine.ensure_network(self.domain)  # last: a missing image leaves nothing behind
        return dict(self.images)

    def check_host_ports(self) -> None:
        """Every published host port must be free (or held by this chunk's own pnr container), so a clash is
        reported before any container starts. Only for a local engine: a remote engine's ports are not ours
        to test (the start-time translation in `Engine.create_and_start` still names the port then)."""
        if not self.engine.is_local():
            return
        taken: list[str] = []
        for name in self.names:
            container = self.plan.chunks[name].container
            bindings = container.port_bindings()
            if not bindings:
                continue
            own: set[tuple[int, str]] = set()
            existing = self.engine.inspect(container.name)
            if (existing is not None and existing.running and existing.labels.get(LABEL_DOMAIN) == self.domain
                    and existing.labels.get(LABEL_CHUNK) == name):
                own = self.engine.published_ports(existing.id)
            for key, b in bindings.items():
                if (b.host_port, b.protocol) in own:
                    continue
                problem = host_port_problem(b.host_ip, b.host_port, b.protocol)
                if problem:
                    taken.append(f"chunk {name}: host port {b.host_ip}:{b.host_port}/{b.protocol} "
                                 f"(container.ports {key!r} of {container.name}) is already in use ({problem})")
        if taken:
            raise EngineError("\n".join(taken) + "\n  nothing was started; stop what holds the port or change container.ports")

    def announce(self) -> None:
        """Report every chunk whose gate is closed as waiting, with what it waits on (once, at the start)."""
        for name in self.names:
            gate = self.plan.chunks[name].gatekeeper
            if not self.store.holds(gate):
                unmet = ", ".join(f"{s} is {c} (needs {w})" for s, (c, w) in self.store.unmet(gate).items())
                self.set_phase(name, Phase.WAITING, f"waits on {unmet}")

    # -- a chunk ----------------------------------------------------------------------------------
    def wait_gate(self, chunk: str) -> None:
        """Block (event-driven) up to one slice for the gate; GateClosed lets Prefect retry (visible waiting)."""
        spec = self.plan.chunks[chunk]
        prog = self.progress[chunk]
        prog.gate_checks += 1
        slice_end = min(time.monotonic() + self.gate_slice, self.deadline + 1)
        self.store.wait(lambda: self.aborted or self.store.holds(spec.gatekeeper), max(0.0, slice_end - time.monotonic()))
        if self.aborted:
            self.set_phase(chunk, Phase.BLOCKED, str(self.abort_error).splitlines()[0])
            raise ChunkBlocked(f"{chunk} did not start: {self.abort_error}")
        if not self.store.holds(spec.gatekeeper):
            unmet = ", ".join(f"{s} is {c} (needs {w})" for s, (c, w) in self.store.unmet(spec.gatekeeper).items())
            raise GateClosed(f"{chunk} waits on {unmet}")

    def should_retry(self, chunk: str) -> bool:
        return not self.aborted and self.progress[chunk].phase == Phase.WAITING

    def bring_up_chunk(self, chunk: str, run_probe: Callable[[str], ProbeResult]) -> dict[str, Any]:
        """After the gate opened: start (or reuse) the container, probe it, wait for the flowout."""
        spec = self.plan.chunks[chunk]
        self.set_phase(chunk, Phase.STARTING, f"starting {spec.container.name}", started_at=time.time())
        try:
            state, action = self.ensure_container(chunk)
        except EngineError as exc:
            self._fail(chunk, str(exc))
            raise ChunkFailed(str(exc)) from None
        self.set_phase(chunk, Phase.PROBING, f"{state.name} {action}", container=state.name, container_id=state.id, action=action)
        if spec.health_check is not None or spec.kind == "job":
            run_probe(chunk)  # writes the status mapping (a job: its flowout); raises ChunkFailed on failure
        else:
            self._check_alive(chunk)
            self.progress[chunk].ready_at = time.time()
            if spec.flowout:
                self.store.set({k: v for k, v in spec.flowout.items()})
        if not self.store.wait(lambda: self.aborted or self.store.holds(spec.flowout), max(0.0, self.deadline - time.monotonic())) or self.aborted:
            unmet = ", ".join(f"{s} is {c} (needs {w})" for s, (c, w) in self.store.unmet(spec.flowout).items())
            message = f"{chunk}: readiness passed but its flowout never held: {unmet}"
            self._fail(chunk, message)
            raise ChunkFailed(message)
        # ready_at: when readiness was established (before its signals were written), if that is known
        self.set_phase(chunk, Phase.READY, f"{state.name} ready", ready_at=self.progress[chunk].ready_at or time.time())
        return {"chunk": chunk, "container": state.name, "container_id": state.id, "action": action}

    def desired(self, chunk: str) -> dict[str, Any]:
        """What the chunk's container must look like (see pnr.converge)."""
        spec = self.plan.chunks[chunk]
        desired = desired_state(spec.container, self.images[chunk], self.env_of(chunk))
        mount = self.runtime_mount(chunk)
        if mount is not None:
            desired["runtime_mount"] = str(mount)
        return desired

    def env_of(self, chunk: str) -> dict[str, str]:
        """The chunk's container env with ${VAR} expanded (once per run; ConfigError names the config)."""
        if chunk not in self.envs:
            self.envs[chunk] = expand_env(self.plan.chunks[chunk], self.plan.refs[chunk].path, source=self.config_path)
        return self.envs[chunk]

    def runtime_mount(self, chunk: str) -> Path | None:
        spec = self.plan.chunks[chunk]
        return self.store.runtime_dir.resolve() if (spec.container.mount_runtime or self.plan.domain.mount_runtime) else None

    def ensure_container(self, chunk: str) -> tuple[ContainerState, str]:
        """Reuse the chunk's container if unchanged and running; else (re)create it, saying why."""
        spec = self.plan.chunks[chunk]
        desired = self.desired(chunk)
        existing = self.engine.inspect(spec.container.name)
        decision = decide(existing, desired, domain=self.domain, chunk=chunk, container=spec.container.name,
                          force=self.force_recreate)
        if decision.action == "refuse":
            raise EngineError(f"chunk {chunk}: {decision.reasons[0]}")
        if decision.action == "reuse" and existing is not None:
            return existing, "reused"
        if existing is not None:
            self.set_phase(chunk, Phase.STARTING, f"recreating {spec.container.name}: {'; '.join(decision.reasons)}")
            self.engine.remove(existing.id)
        state = self.engine.create_and_start(
            domain=self.domain, cpux=self.cpux, chunk=spec, image_id=self.images[chunk], config_hash=config_hash(desired),
            flow_run_id=self.flow_run_id, network=f"pnr_{self.domain}", base_dir=self.base_dir,
            env=self.env_of(chunk),
            runtime_dir=self.runtime_mount(chunk), spec_label=spec_label(desired),
        )
        return state, "created" if existing is None else "recreated (" + "; ".join(decision.reasons) + ")"

    def _check_alive(self, chunk: str) -> None:
        cid = self.progress[chunk].container_id or ""
        state = self.engine.inspect(cid)
        if state is None or not state.running:
            how = "was removed" if state is None else f"exited with code {state.exit_code}"
            message = f"{chunk}: container {self.progress[chunk].container} {how} before it was ready"
            tail = self.engine.logs_tail(cid, LOG_TAIL_LINES) if state else ""
            if tail:
                message += "\n  last log lines:\n" + _indent(tail)
            self._fail(chunk, message)
            raise ChunkFailed(message)

    def probe_chunk(
        self, chunk: str, log: Callable[[str], None] = lambda _m: None, debug: Callable[[str], None] | None = None,
    ) -> ProbeResult:
        """Run the chunk's health check until success or deadline; write the mapped signal either way.

        A job chunk is awaited instead (`await_job`). Attempt 1, every change of outcome and the end are
        logged with `log`; repeated identical outcomes go to `debug` (or `log`, if not given)."""
        spec = self.plan.chunks[chunk]
        if spec.kind == "job":
            return self.await_job(chunk, log)
        check = spec.health_check
        assert check is not None
        cid = self.progress[chunk].container_id or ""
        ctx = ProbeContext(
            engine=self.engine, container_id=cid, ports=spec.container.port_bindings(),
            network=f"pnr_{self.domain}", store=self.store,
        )
        try:
            probe = make_probe(check, ctx)
        except (PnrError, ValueError) as exc:
            message = f"{chunk}: cannot probe {check.type}: {exc}"
            self._fail(chunk, message)
            raise ChunkFailed(message) from None
        gone: list[str] = []
        previous: list[tuple[bool, str]] = []

        def alive() -> None:
            if self.aborted:
                raise Aborted(str(self.abort_error))
            state = self.engine.inspect(cid)
            if state is None or not state.running:
                gone.append("was removed" if state is None else f"exited with code {state.exit_code}")
                raise ContainerGone(gone[-1])

        def on_attempt(n: int, attempt: Any) -> None:
            if n == 1:
                self.progress[chunk].first_probe_at = time.time()
            key = (attempt.ok, re.sub(r"\d+(\.\d+)?", "#", attempt.observation))  # same outcome, other numbers
            sink = log if (not previous or previous[-1] != key or debug is None) else debug
            previous[:] = [key]
            sink(f"{probe.describe()}: attempt {n}: {'ok' if attempt.ok else 'not ready'}: {attempt.observation} ({attempt.seconds * 1000:.0f} ms)")

        extra = "".join(
            f", {label} {value:g}" for label, value in (
                ("start period", check.start_period_seconds), ("success threshold", check.success_threshold),
                ("failure threshold", check.failure_threshold or 0),
            ) if value and not (label == "success threshold" and value == 1)
        )
        log(f"probing {probe.describe()} every {check.interval_seconds:g}s for up to {check.deadline_seconds:g}s{extra}")
        try:
            result = probe.run(alive=alive, on_attempt=on_attempt)
        except Aborted as exc:
            self._fail(chunk, f"{chunk}: probing stopped, the run was aborted: {exc}")
            raise ChunkFailed(f"{chunk}: probing stopped: {exc}") from None
        except ContainerGone:
            result = ProbeResult(False, 0, time.monotonic() - self.started, f"container {spec.container.name} {gone[-1]} before it was ready")
        mapping = check.status_mapping
        outcome = mapping.success if result.ok else mapping.failure
        if result.ok:  # ready from this moment: dependents may start as soon as the mapping is written
            self.progress[chunk].ready_at = time.time()
        if outcome is not None:
            prompt = (spec.flowout.get(outcome.key) or PnR()).prompt
            self.store.set({outcome.key: outcome.to_pnr(prompt)})
        if result.ok:
            log(f"ready: {result.last} after {result.attempts} attempt(s), {result.elapsed:.2f}s")
            return result
        message = f"{chunk}: not ready: {probe.describe()}: {result.last}"
        if outcome is not None:
            message += f"; wrote {outcome.key}={outcome.tv}"
        tail = self.engine.logs_tail(cid, LOG_TAIL_LINES)
        if tail:
            message += "\n  last log lines:\n" + _indent(tail)
        self._fail(chunk, message)
        raise ChunkFailed(message)

    def await_job(self, chunk: str, log: Callable[[str], None] = lambda _m: None, poll: float = 0.1) -> ProbeResult:
        """A job chunk: wait for its container to exit. Exit 0 writes the flowout; anything else writes each
        flowout signal as N (response: the exit code) and fails the chunk with the log tail."""
        spec = self.plan.chunks[chunk]
        cid = self.progress[chunk].container_id or ""
        began = time.monotonic()
        self.progress[chunk].first_probe_at = time.time()
        log(f"job {spec.container.name}: waiting for it to exit (bounded by the run's deadline)")
        state = self.engine.inspect(cid)
        while state is not None and state.status not in ("exited", "dead"):
            if self.aborted:
                self._fail(chunk, f"{chunk}: job stopped waiting, the run was aborted: {self.abort_error}")
                raise ChunkFailed(f"{chunk}: job stopped waiting: {self.abort_error}")
            if time.monotonic() > self.deadline:
                message = f"{chunk}: job {spec.container.name} still running when the run's deadline passed ({self.timeout_seconds:g}s)"
                self._fail(chunk, message)
                raise ChunkFailed(message)
            time.sleep(poll)
            state = self.engine.inspect(cid)
        elapsed = time.monotonic() - began
        code = None if state is None else state.exit_code
        if code == 0:
            log(f"job {spec.container.name} exited 0 after {elapsed:.2f}s")
            if spec.flowout:
                self.progress[chunk].ready_at = time.time()
                self.store.set(dict(spec.flowout))
            return ProbeResult(True, 1, elapsed, "exited 0")
        how = "was removed before it finished" if state is None else f"exited with code {code}"
        if spec.flowout:
            self.store.set({k: PnR(prompt=v.prompt, response=[f"exit code {code}"], tv="N") for k, v in spec.flowout.items()})
        message = f"{chunk}: job {spec.container.name} {how}"
        if spec.flowout:
            message += f"; wrote {', '.join(f'{k}=N' for k in spec.flowout)}"
        tail = self.engine.logs_tail(cid, LOG_TAIL_LINES) if state is not None else ""
        if tail:
            message += "\n  last log lines:\n" + _indent(tail)
        self._fail(chunk, message)
        raise ChunkFailed(message)

    def _fail(self, chunk: str, message: str) -> None:
        self.set_phase(chunk, Phase.FAILED, message)

    # -- the loop ---------------------------------------------------------------------------------
    def supervise(self, poll: float = 0.1, done: Callable[[], bool] | None = None) -> None:
        """Watch until every chunk is final; abort on stall or deadline. Reads external files every `poll`."""
        while True:
            self.store.refresh()
            self.flush()
            if all(p.phase.final for p in self.progress.values()) or (done is not None and done()):
                return
            if self.aborted:
                return
            blocked = self.find_stall()
            if blocked:
                self.abort(StallError(self._stall_message(blocked)))
                return
            if time.monotonic() > self.deadline:
                self.abort(RunTimeout(self._timeout_message()))
                return
            with self.store.changed:
                self.store.changed.wait(poll)

    def find_stall(self) -> list[BlockedChunk]:
        """Chunks whose gate can never open, when nothing is starting or probing; else []."""
        phases = {n: p.phase for n, p in self.progress.items()}
        if any(ph.active for ph in phases.values()):
            return []
        blocked = []
        for name, phase in phases.items():
            if phase != Phase.WAITING:
                continue
            unmet = self.store.unmet(self.plan.chunks[name].gatekeeper)
            dead = {s: v for s, v in unmet.items() if self._signal_is_dead(s)}
            if dead:
                blocked.append(BlockedChunk(name, unmet, [s for s in unmet if s in self.plan.external]))
        return blocked

    def _signal_is_dead(self, signal: str) -> bool:
        producers = self.plan.producers.get(signal, [])
        if not producers:
            return False  # external: someone may still set it (bounded by the timeout)
        for prod in producers:
            if prod == PNR_ITSELF:
                continue
            if prod in self.progress and not self.progress[prod].phase.final:
                return False
        return True

    def _stall_message(self, blocked: list[BlockedChunk]) -> str:
        lines = [f"execution stalled in cpux {self.cpux}: nothing is running and these chunks can never start:"]
        for b in blocked:
            lines.append("  " + b.render() + self._producer_note(list(b.waits_on)))
        return "\n".join(lines)

    def _producer_note(self, signals: list[str]) -> str:
        notes = []
        for sig in signals:
            for prod in self.plan.producers.get(sig, []):
                if prod in self.progress and self.progress[prod].phase == Phase.FAILED:
                    notes.append(f"{prod} failed")
        return f" ({'; '.join(sorted(set(notes)))})" if notes else ""

    def _timeout_message(self) -> str:
        lines = [f"timed out after {self.timeout_seconds:g}s in cpux {self.cpux}; still not completed:"]
        externals: set[str] = set()
        for name, prog in self.progress.items():
            if prog.phase.final:
                continue
            unmet = self.store.unmet(self.plan.chunks[name].gatekeeper) if prog.phase == Phase.WAITING else {}
            what = BlockedChunk(name, unmet).render() if unmet else f"{name} is {prog.phase.value}"
            lines.append("  " + what)
            externals |= {s for s in unmet if s in self.plan.external}
        for sig in sorted(externals):
            lines.append(f"  external signal {sig} never came; set it with: pnr signal set {self.config_path} {sig} --tv {self._wanted(sig)}")
        return "\n".join(lines)

    def _wanted(self, signal: str) -> str:
        for name in self.plan.consumers.get(signal, []):
            return self.plan.chunks[name].gatekeeper[signal].tv
        return "Y"

    def close(self) -> None:
        """After the tasks ended: chunks that never left WAITING (e.g. Prefect never ran them because an
        upstream task failed) are marked blocked, so status and artifacts tell the truth."""
        reason = str(self.abort_error).splitlines()[0] if self.abort_error else "an upstream chunk failed"
        for name, prog in self.progress.items():
            if not prog.phase.final:
                unmet = self.store.unmet(self.plan.chunks[name].gatekeeper)
                why = BlockedChunk(name, unmet).render().removeprefix(name + " ") if unmet else reason
                self.set_phase(name, Phase.BLOCKED, f"never started: {why}")
        self.flush()

    def outcome_error(self) -> Exception | None:
        """The run's failure, if any: the abort reason, else the failed chunks."""
        if self.abort_error is not None:
            failed = [p for p in self.progress.values() if p.phase == Phase.FAILED]
            if failed and isinstance(self.abort_error, StallError):
                details = "\n".join(f"  {p.name} failed: {p.detail}" for p in failed)
                return StallError(f"{self.abort_error}\n{details}")
            return self.abort_error
        failed = [p for p in self.progress.values() if p.phase == Phase.FAILED]
        if failed:
            return ChunkFailed("\n".join(f"{p.name} failed: {p.detail}" for p in failed))
        unfinished = [p for p in self.progress.values() if p.phase != Phase.READY]
        if unfinished:  # never report success for a chunk that did not come up, whatever the reason
            return RunError("\n".join(f"{p.name} did not complete: {p.phase.value} {p.detail}".rstrip() for p in unfinished))
        return None


def host_port_problem(host_ip: str, port: int, protocol: str = "tcp") -> str | None:
    """None if `host_ip:port` can be bound on this machine now, else the reason (e.g. "Address already in use")."""
    ip = host_ip.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as sock:
            # like any server (docker-proxy too): connections of an earlier holder in TIME_WAIT do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
