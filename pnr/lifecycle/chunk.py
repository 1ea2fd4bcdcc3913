"""One driver per chunk: converge its container, start it, probe it, turn the outcome into signals, and
say why it failed (with the container's last log lines). The bring-up and the watch drive the same driver.

    start()           reuse / (re)create the container (pnr.engines.converge decides, with reasons)
    claim_early()     start() ahead of bring_up, for a chunk whose gate holds already
    probe()           the health check until ready or given up; writes the status mapping either way
    await_job()       a job chunk: its container must exit 0; writes the flowout (or N with the exit code)
    bring_up()        the three above in order, then waits for the flowout
    attempt()         one watch attempt: is it running, does one probe attempt pass
    lost_values() / recovered_values()   what a regression / recovery writes
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pnr.engines import ContainerState, config_hash, decide, desired_state, network_name, spec_label
from pnr.engines.protocol import ContainerEngine
from pnr.exceptions import ChunkFailed, EngineError, EngineUnreachable, NameInUse, PnrError
from pnr.lifecycle.state import ChunkProgress, CpuxState, Phase
from pnr.model import CheckBase, DesignChunk, PnR, SignalCheck, domain_environ, expand_env, iter_checks
from pnr.probes import Aborted, Attempt, ContainerGone, NeverReady, Probe, ProbeContext, ProbeResult, make_probe

LOG_TAIL_LINES = 15
# while a health check probes, the container's state is asked of the engine at most this often (the state
# inspected when it started counts as the first ask): a probe every 0.05 s would otherwise add 20 `docker
# inspect`s a second per probing chunk
ALIVE_EVERY_SECONDS = 0.25
Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


class ChunkDriver:
    """Drives one chunk of a CPUX run (`state`)."""

    def __init__(self, state: CpuxState, name: str) -> None:
        self.state = state
        self.name = name
        self.spec: DesignChunk = state.plan.chunks[name]
        self.engine: ContainerEngine = state.engine_of(name)  # the engine this chunk runs on
        self._env: dict[str, str] | None = None
        self._running_at: float | None = None  # when the engine last said the container runs (monotonic)
        self._early: Future[tuple[ContainerState, str]] | None = None  # started ahead of its task (claim_early)

    @property
    def progress(self) -> ChunkProgress:
        return self.state.progress[self.name]

    # -- the container ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The container env with ${VAR} and ${chunk:...} expanded (once per run; ConfigError names the config)."""
        if self._env is None:
            self._env = expand_env(
                self.spec,
                self.state.plan.refs[self.name].path,
                environ=domain_environ(self.state.plan.domain, self.state.config_path, self.state.control.environ),
                source=self.state.config_path,
                resolve=self.state.engines.resolve,
            )
        return self._env

    def runtime_mount(self) -> Path | None:
        mounted = self.spec.container.mount_runtime or self.state.plan.domain.mount_runtime
        return self.state.store.runtime_dir.resolve() if mounted else None

    def desired(self) -> dict[str, Any]:
        """What the chunk's container must look like (see pnr.engines.converge)."""
        port_ip = self.state.plan.domain.port_ip(self.spec)
        desired = desired_state(self.spec.container, self.state.images[self.name], self.env(), port_ip)
        mount = self.runtime_mount()
        if mount is not None:
            desired["runtime_mount"] = str(mount)
        return desired

    def start(self) -> tuple[ContainerState, str]:
        """Reuse the chunk's container if unchanged and running; else (re)create it, saying why."""
        if self.name in self.state.absent:  # its name was free when the run prepared: create without a look
            self.state.absent.discard(self.name)
            try:
                return self._converge(None)
            except NameInUse:  # made since: look, and decide as usual
                pass
        return self._converge(self.engine.inspect(self.spec.container.name))

    def _converge(self, existing: ContainerState | None) -> tuple[ContainerState, str]:
        st, spec = self.state, self.spec
        desired = self.desired()
        decision = decide(
            existing, desired, domain=st.domain, chunk=self.name, container=spec.container.name, force=st.force_recreate
        )
        if decision.action == "refuse":
            raise EngineError(f"chunk {self.name}: {decision.reasons[0]}")
        if decision.action == "reuse" and existing is not None:
            return existing, "reused"
        if existing is not None:
            st.set_phase(self.name, Phase.STARTING, f"recreating {spec.container.name}: {'; '.join(decision.reasons)}")
            self.engine.remove(existing.id)
        state = self.engine.create_and_start(
            domain=st.domain,
            cpux=st.cpux,
            chunk=spec,
            image_id=st.images[self.name],
            config_hash=config_hash(desired),
            flow_run_id=st.flow_run_id,
            network=network_name(st.domain),
            base_dir=st.base_dir,
            env=self.env(),
            runtime_dir=self.runtime_mount(),
            spec_label=spec_label(desired),
            config_file=str(Path(st.config_path).resolve()),
        )
        return state, "created" if existing is None else "recreated (" + "; ".join(decision.reasons) + ")"

    # -- a bring-up ------------------------------------------------------------------------------
    def claim_early(self) -> Callable[[], None]:
        """Claim this container's start ahead of `bring_up` and return the start, for the caller to run in a
        thread of its own (its gate holds already: see `CpuxRun.head_start`). From the claim on, `bring_up`
        carries on from that start instead of starting the container itself, so claim before anything may call
        `bring_up`. An engine error is raised where `bring_up` would have raised it."""
        early: Future[tuple[ContainerState, str]] = Future()
        self._early = early

        def start() -> None:
            try:  # whatever happens, `bring_up` gets an answer: it waits for this one
                self.state.set_phase(
                    self.name, Phase.STARTING, f"starting {self.spec.container.name}", started_at=time.time()
                )
                early.set_result(self.start())
            except BaseException as exc:  # raised in bring_up, as a start of its own would have
                early.set_exception(exc)

        return start

    def bring_up(self, run_probe: Callable[[str], object]) -> dict[str, str]:
        """After the gate opened: start (or reuse) the container — or take the one `claim_early` started —, probe
        it (`run_probe(name)` runs `probe` where the caller wants it, e.g. as a Prefect sub-task), then wait for
        the flowout."""
        st, spec = self.state, self.spec
        early, self._early = self._early, None
        if early is None:
            st.set_phase(self.name, Phase.STARTING, f"starting {spec.container.name}", started_at=time.time())
        try:
            container, action = early.result() if early is not None else self.start()
        except EngineError as exc:
            if isinstance(exc, EngineUnreachable):
                st.engine_lost(exc.engine, str(exc))
            raise self.fail(str(exc)) from None
        # a container the early start of this bring-up made: its action and times, as that start saw them
        taken = st.early.of(self.name, container) if st.early is not None and action == "reused" else None
        action, seen = taken if taken is not None else (action, {})
        self._running_at = time.monotonic() if container.running else None
        if spec.on_start:  # "started": dependents that wait only for a running container may go now
            st.store.set(dict(spec.on_start))
        st.set_phase(
            self.name,
            Phase.PROBING,
            f"{container.name} {action}",
            container=container.name,
            container_id=container.id,
            action=action,
            created_at=seen.get("created_at", self.progress.created_at),
            started_at=seen.get("started_at", self.progress.started_at),
        )
        if spec.health_check is not None or spec.kind == "job":
            run_probe(self.name)  # writes the status mapping (a job: its flowout); raises ChunkFailed on failure
            if spec.health_check is not None and spec.health_check.status_mapping.success is None and spec.flowout:
                st.store.set(self._not_self_reported(dict(spec.flowout)))  # no mapping: ready writes the flowout
        else:
            self.check_alive(container)
            self.progress.ready_at = time.time()
            if spec.flowout:
                st.store.set(dict(spec.flowout))
        holds = st.store.wait(
            lambda: st.aborted or st.store.holds(spec.flowout),
            max(0.0, st.deadline - time.monotonic()),
            signals=spec.flowout,
        )
        if not holds or st.aborted:
            raise self.fail(f"{self.name}: readiness passed but its flowout never held: {st.unmet_text(spec.flowout)}")
        # ready_at: when readiness was established (before its signals were written), if that is known; for a
        # container the early start brought to ready, when it did (this run's probe confirmed it)
        st.set_phase(
            self.name,
            Phase.READY,
            f"{container.name} ready",
            ready_at=seen.get("ready_at", self.progress.ready_at or time.time()),
            first_probe_at=seen.get("first_probe_at", self.progress.first_probe_at),
        )
        return {"chunk": self.name, "container": container.name, "container_id": container.id, "action": action}

    def check_alive(self, state: ContainerState | None) -> None:
        """ChunkFailed (with the log tail) unless the container runs. `state`: as inspected right after it
        started (or was found running, to be reused) — another inspect a moment later would tell nothing new,
        and at 500 chunks every engine call competes with the containers' own start for the CPU."""
        if state is None or not state.running:
            how = "was removed" if state is None else f"exited with code {state.exit_code}"
            message = f"{self.name}: container {self.progress.container} {how} before it was ready"
            raise self.fail(message, with_logs=state is not None)

    def probe_context(self, container_id: str) -> ProbeContext:
        st = self.state
        return ProbeContext(
            engine=self.engine,
            container_id=container_id,
            ports=self.state.plan.domain.port_bindings(self.spec),
            network=network_name(st.domain),
            store=st.store,
        )

    def probe(self, log: Log = _quiet, debug: Log | None = None) -> ProbeResult:
        """The health check until success or deadline; write the mapped signal either way. A job chunk is
        awaited instead. Attempt 1, every new outcome and the end go to `log`; outcomes seen before to `debug`."""
        if self.spec.kind == "job":
            return self.await_job(log)
        st, spec, check = self.state, self.spec, self.spec.health_check
        assert check is not None
        cid = self.progress.container_id or ""
        try:
            probe = make_probe(check, self.probe_context(cid))
        except (PnrError, ValueError) as exc:
            raise self.fail(f"{self.name}: cannot probe {check.type}: {exc}") from None
        gone: list[str] = []
        alive = self._alive_check(cid, gone)
        log(
            f"probing {probe.describe()} every {check.interval_seconds:g}s for up to {check.deadline_seconds:g}s"
            f"{_timing_extras(check)}"
        )
        try:
            result = probe.run(alive=alive, on_attempt=self._attempt_logger(probe, log, debug))
        except Aborted as exc:
            self.fail(f"{self.name}: probing stopped, the run was aborted: {exc}")
            raise ChunkFailed(f"{self.name}: probing stopped: {exc}") from None
        except ContainerGone:
            elapsed = time.monotonic() - st.started
            result = ProbeResult(False, 0, elapsed, f"container {spec.container.name} {gone[-1]} before it was ready")
        mapping = check.status_mapping
        outcome = mapping.success if result.ok else mapping.failure
        if result.ok:  # ready from this moment: dependents may start as soon as the mapping is written
            self.progress.ready_at = time.time()
        if outcome is not None:
            st.store.set({outcome.key: outcome.to_pnr(self._prompt(outcome.key))})
        if result.ok:
            log(f"ready: {result.last} after {result.attempts} attempt(s), {result.elapsed:.2f}s")
            return result
        message = f"{self.name}: not ready: {probe.describe()}: {result.last}"
        if outcome is not None:
            message += f"; wrote {outcome.key}={outcome.tv}"
        raise self.fail(message, with_logs=True)

    def _alive_check(self, cid: str, gone: list[str]) -> Callable[[], None]:
        """The probe's `alive` callback: Aborted if the run was; ContainerGone (why, appended to `gone`) if the
        container exited or was removed — asked of the engine at most every ALIVE_EVERY_SECONDS."""
        st = self.state
        # when the engine was last asked (monotonic): the start's own inspect counts, once
        asked = [self._running_at if self._running_at is not None else float("-inf")]
        self._running_at = None

        def alive() -> None:
            if st.aborted:
                raise Aborted(str(st.abort_error))
            now = time.monotonic()
            if now - asked[0] < ALIVE_EVERY_SECONDS:
                return
            asked[0] = now
            state = self._inspect_or_abort(cid)
            if state is None or not state.running:
                gone.append("was removed" if state is None else f"exited with code {state.exit_code}")
                raise ContainerGone(gone[-1])

        return alive

    def _inspect_or_abort(self, cid: str) -> ContainerState | None:
        """The container's state; if its engine went away, the whole run stops, naming it (Aborted)."""
        try:
            return self.engine.inspect(cid)
        except EngineUnreachable as exc:
            raise Aborted(str(self.state.engine_lost(exc.engine, str(exc))).splitlines()[0]) from None

    def _attempt_logger(self, probe: Probe, log: Log, debug: Log | None) -> Callable[[int, Attempt], None]:
        seen: set[tuple[bool, str]] = set()

        def on_attempt(n: int, attempt: Attempt) -> None:
            if n == 1:
                self.progress.first_probe_at = time.time()
            key = (attempt.ok, re.sub(r"\d+(\.\d+)?", "#", attempt.observation))  # same outcome, other numbers
            # an outcome seen before goes to debug: a server that is coming up often flickers between two
            # errors (connection reset / disconnected), which would otherwise log every attempt at 20 a second
            sink = log if (key not in seen or debug is None) else debug
            seen.add(key)
            verdict = "ok" if attempt.ok else "not ready"
            sink(f"{probe.describe()}: attempt {n}: {verdict}: {attempt.observation} ({attempt.seconds * 1000:.0f} ms)")

        return on_attempt

    def await_job(self, log: Log = _quiet, poll: float = 0.1) -> ProbeResult:
        """A job chunk: wait for its container to exit. Exit 0 writes the flowout; anything else writes each
        flowout signal as N (response: the exit code) and fails the chunk with the log tail."""
        st, spec = self.state, self.spec
        cid = self.progress.container_id or ""
        began = time.monotonic()
        self.progress.first_probe_at = time.time()
        log(f"job {spec.container.name}: waiting for it to exit (bounded by the run's deadline)")
        state = self.engine.inspect(cid)
        while state is not None and state.status not in ("exited", "dead"):
            if st.aborted:
                self.fail(f"{self.name}: job stopped waiting, the run was aborted: {st.abort_error}")
                raise ChunkFailed(f"{self.name}: job stopped waiting: {st.abort_error}")
            if time.monotonic() > st.deadline:
                raise self.fail(
                    f"{self.name}: job {spec.container.name} still running when the run's deadline "
                    f"passed ({st.timeout_seconds:g}s)"
                )
            time.sleep(poll)
            state = self.engine.inspect(cid)
        elapsed = time.monotonic() - began
        code = None if state is None else state.exit_code
        if code == 0:
            log(f"job {spec.container.name} exited 0 after {elapsed:.2f}s")
            if spec.flowout:
                self.progress.ready_at = time.time()
                st.store.set(dict(spec.flowout))
            return ProbeResult(True, 1, elapsed, "exited 0")
        how = "was removed before it finished" if state is None else f"exited with code {code}"
        message = f"{self.name}: job {spec.container.name} {how}"
        if spec.flowout:
            st.store.set(
                {k: PnR(prompt=v.prompt, response=[f"exit code {code}"], tv="N") for k, v in spec.flowout.items()}
            )
            message += f"; wrote {', '.join(f'{k}=N' for k in spec.flowout)}"
        raise self.fail(message, with_logs=state is not None)

    def fail(self, message: str, with_logs: bool = False) -> ChunkFailed:
        """Mark the chunk failed (the message gets the container's last log lines if asked); returns the
        exception for the caller to raise."""
        if with_logs:
            tail = self.engine.logs_tail(self.progress.container_id or "", LOG_TAIL_LINES)
            if tail:
                message += "\n  last log lines:\n" + "\n".join("    " + line for line in tail.splitlines())
        self.state.set_phase(self.name, Phase.FAILED, message)
        return ChunkFailed(message)

    # -- the watch -------------------------------------------------------------------------------
    def attempt(self) -> tuple[bool, str]:
        """One watch attempt: the container must run and (with a health check) one fresh probe attempt pass
        (fresh: composites remember passed children, a watch must not)."""
        container = self.spec.container.name
        try:
            state = self.engine.inspect(container)
        except EngineUnreachable as exc:  # a silent engine is a failed attempt: the chunk is lost after its threshold
            return False, str(exc)
        if state is None:
            return False, f"container {container} was removed"
        if not state.running:
            return False, f"container {container} is {state.status} (exit code {state.exit_code})"
        check = self.spec.health_check
        if check is None:
            return True, f"container {container} is running"
        try:
            probe = make_probe(check, self.probe_context(state.id))
        except (PnrError, ValueError) as exc:
            return False, f"cannot probe {check.type}: {exc}"
        try:
            return probe.attempt()
        except NeverReady as exc:
            return False, str(exc)
        except Exception as exc:  # an observation, not a crash
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            probe.close()

    def lost_values(self, container_gone: bool = False) -> dict[str, PnR]:
        """What a regression writes: the failure mapping; without one, every flowout signal as N. When the
        container is gone (or stopped), its on_start signals too."""
        check = self.spec.health_check
        failure = check.status_mapping.failure if check is not None else None
        if failure is not None:
            values = {failure.key: failure.to_pnr(self._prompt(failure.key))}
        else:
            values = {k: PnR(prompt=v.prompt, response=["lost"], tv="N") for k, v in self.spec.flowout.items()}
        if container_gone:
            values.update(
                {k: PnR(prompt=v.prompt, response=["not running"], tv="N") for k, v in self.spec.on_start.items()}
            )
        return self._not_self_reported(values)

    def recovered_values(self) -> dict[str, PnR]:
        """What a recovery writes: the success mapping; and the flowout, where the loss wrote it as N."""
        check = self.spec.health_check
        values: dict[str, PnR] = dict(self.spec.on_start)  # it runs again
        if check is None or check.status_mapping.failure is None:
            values.update(self.spec.flowout)
        success = check.status_mapping.success if check is not None else None
        if success is not None:
            values[success.key] = success.to_pnr(self._prompt(success.key))
        return self._not_self_reported(values)

    def _not_self_reported(self, values: dict[str, PnR]) -> dict[str, PnR]:
        """Signals the container writes itself (signal checks) are read, never overwritten."""
        check = self.spec.health_check
        own = {c.signal for c in iter_checks(check) if isinstance(c, SignalCheck)} if check is not None else set()
        return {k: v for k, v in values.items() if k not in own}

    def _prompt(self, signal: str) -> str:
        return (self.spec.flowout.get(signal) or PnR()).prompt


def _timing_extras(check: CheckBase) -> str:
    extras = [
        ("start period", check.start_period_seconds),
        ("success threshold", check.success_threshold),
        ("failure threshold", check.failure_threshold or 0),
    ]
    return "".join(
        f", {label} {value:g}" for label, value in extras if value and not (label == "success threshold" and value == 1)
    )
