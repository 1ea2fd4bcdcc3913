"""A bring-up that begins before its flow run: while pnr's Prefect server starts, the domain comes up already.

The first `pnr up` on a machine (or after a reboot, or after `pnr server stop`) starts pnr's Prefect server,
which takes seconds before it answers. `EarlyStart` does not wait for it: it drives the bring-up on pnr's own
gates, with the same scheduler (`CpuxRun`) and chunk drivers a flow run uses, in a thread of the `pnr up`
process. When the server and the runner answer, the flow run takes over (`hand_over`): the early start aborts
its CPUX runs and waits for their threads (a container start under way finishes first); the flow run then finds
each container it started running, unchanged, and reuses it, probes it again (the run Prefect records
establishes readiness itself), and starts the rest.

The early start's containers carry its id (`early-…`) in the run label, and the flow run is told that id: a
cancelled or crashed flow run removes them as its own, and its table and timeline show when they really
started and became ready (read from the chunk-state file the early start leaves). The early start never decides
a run's outcome: a chunk that fails here fails again, recorded, in the flow run.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from pnr.engines import Engine, EngineSet
from pnr.engines.engineset import EngineSource
from pnr.exceptions import ChunkFailed, EngineUnreachable, RunError
from pnr.lifecycle.control import RunControl
from pnr.lifecycle.cpux import ChunkBlocked, CpuxRun, GateClosed
from pnr.lifecycle.state import Phase
from pnr.model import SYSTEM_READY, SYSTEM_READY_VALUE, Plan, domain_environ
from pnr.records import RunEvent
from pnr.runtime import SignalStore
from pnr.settings import get_settings

EARLY_ID_PREFIX = "early-"
HAND_OVER_SECONDS = 60.0  # the longest `hand_over` waits for a container start under way (an engine call's bound)


class EarlyStart:
    """The bring-up of `cpuxs` of `plan` until its flow run takes over (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        config_path: str,
        runtime_dir: Path,
        cpuxs: list[str],
        timeout_seconds: float,
        environ: Mapping[str, str] | None = None,
        env_files: list[str] | None = None,
        on_event: Callable[[RunEvent], object] | None = None,
        engine: EngineSource | None = None,
    ) -> None:
        """`engine`: where the chunks run (default: the engines the plan names, as the docker CLI finds them)."""
        self.id = f"{EARLY_ID_PREFIX}{uuid.uuid4()}"
        self.engine = engine
        self.plan = plan
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.cpuxs = cpuxs
        self.timeout_seconds = timeout_seconds
        self.control = RunControl(environ, checked=plan)
        if env_files:  # as the flow run reads them: the domain's own env_files under these
            self.control.environ = domain_environ(plan.domain, config_path, self.control.environ, env_files)
        self._unlisten = self.control.listen(on_event) if on_event is not None else (lambda: None)
        self.runs: list[CpuxRun] = []
        self.error: BaseException | None = None  # what ended it before the hand-over, if anything did
        self._thread = threading.Thread(target=self._run, name="pnr-early-start", daemon=True)

    def start(self) -> EarlyStart:
        self._thread.start()
        return self

    def hand_over(
        self, reason: str = "handed over to the flow run", timeout: float = HAND_OVER_SECONDS
    ) -> dict[str, str]:
        """Stop here, quietly (the caller hears nothing more of it), and wait until nothing of it runs; `reason`
        is what its chunks that were under way record. The phase each chunk it had started had reached (the
        flow run does them again, and its caller need not show all of that twice)."""
        self._unlisten()
        shown = self.reached()
        self.control.interrupt(reason)
        self._thread.join(timeout)
        return shown

    @property
    def engine_lost(self) -> EngineUnreachable | None:
        """The error of an engine that stopped answering during the early start, if one did."""
        lost = (run.abort_error for run in self.runs if isinstance(run.abort_error, EngineUnreachable))
        return next(lost, None)

    def ready(self) -> set[str]:
        return {name for name, phase in self.reached().items() if phase == Phase.READY}

    def reached(self) -> dict[str, str]:
        """The phase of each chunk that got past waiting."""
        return {
            name: prog.phase.value
            for run in self.runs
            for name, prog in run.progress.items()
            if prog.phase != Phase.WAITING
        }

    def _run(self) -> None:
        try:
            plan = self.plan
            store = SignalStore(self.runtime_dir, plan.domain.name, scope=plan.signals_produced_in(self.cpuxs))
            store.start_run({SYSTEM_READY: SYSTEM_READY_VALUE})
            engines = self.engine.engine_set(plan) if self.engine is not None else Engine().engine_set(plan, self.cpuxs)
            deadline = time.monotonic() + self.timeout_seconds
            for cpux in self.cpuxs:
                if self.control.interrupted:
                    return
                run = CpuxRun(
                    plan=plan,
                    cpux=cpux,
                    store=store,
                    engine=engines,
                    config_path=self.config_path,
                    timeout_seconds=max(1.0, deadline - time.monotonic()),
                    run_timeout=self.timeout_seconds,
                    control=self.control,
                    flow_run_id=self.id,
                    gate_slice=get_settings().gate_slice_seconds,
                )
                self.runs.append(run)
                if not self._drive(run, engines):
                    return
        except BaseException as exc:  # the flow run meets it again, and says it
            self.error = exc

    def _drive(self, run: CpuxRun, engines: EngineSet) -> bool:
        """One CPUX: every chunk in a thread of its own, gates deciding who starts when; True if all are ready."""
        stop = self.control.on_interrupt(lambda reason: run.abort(RunError(reason)))
        threads = [
            threading.Thread(target=self._chunk, args=(run, name), name=f"pnr-early-{name}", daemon=True)
            for name in run.names
        ]
        try:
            run.prepare()
            run.announce()
            for thread in threads:
                thread.start()
            run.supervise(done=lambda: not any(t.is_alive() for t in threads))
        except BaseException:
            run.abort(RunError("the early start ended"))  # release the chunks that still wait
            raise
        finally:
            stop()
            # a start under way ends before the flow run takes over; but a thread in a call to an engine that
            # stopped answering may sit there until the call's timeout: it is left (the run ends on that engine)
            lost = isinstance(run.abort_error, EngineUnreachable)
            for thread in threads:
                if thread.ident is not None and not lost:
                    thread.join(HAND_OVER_SECONDS)
            run.close()
        return run.outcome_error() is None

    @staticmethod
    def _chunk(run: CpuxRun, name: str) -> None:
        """A chunk's gate, then its start, probe and flowout, as the flow run's chunk task does them."""
        driver = run.drivers[name]
        try:
            while True:
                try:
                    run.wait_gate(name)
                    break
                except GateClosed:
                    continue
            driver.bring_up(lambda chunk: run.drivers[chunk].probe())
        except (ChunkFailed, ChunkBlocked):
            pass
        except Exception as exc:  # an unexpected engine answer: this chunk failed; the flow run tries again
            run.set_phase(name, Phase.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            run.phase_changed.set()
