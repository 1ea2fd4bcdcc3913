"""CpuxRun logic with an injected fake engine: no daemon, no Prefect."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from pnr.engines.engine import LABEL_CHUNK, LABEL_DOMAIN, LABEL_HASH, LABEL_MANAGED, LABEL_SPEC
from pnr.engines.protocol import ContainerState
from pnr.exceptions import ChunkFailed, ConfigError, EngineError
from pnr.lifecycle import CpuxRun, Phase, ProgressEvent, RunControl, gate_attempts
from pnr.lifecycle.cpux import GATE_SLICE_MAX, gate_slice
from pnr.lifecycle.state import PERSIST_EVERY, persist_interval
from pnr.model import PnR, expand_env, parse_domain
from pnr.model.plan import make_plan
from pnr.runtime.store import SignalStore
from tests.unit.fakes import FakeEngineBase


class FakeEngine(FakeEngineBase):
    def __init__(self) -> None:
        self.containers: dict[str, ContainerState] = {}
        self.removed: list[str] = []
        self.created: list[str] = []

    def inspect(self, name_or_id: str) -> ContainerState | None:
        for c in self.containers.values():
            if name_or_id in (c.id, c.name):
                return c
        return None

    def remove(self, cid: str) -> None:
        self.removed.append(cid)
        self.containers = {k: v for k, v in self.containers.items() if v.id != cid}

    def create_and_start(
        self, *, domain: str, chunk: Any, config_hash: str, spec_label: str = "", **_: Any
    ) -> ContainerState:
        state = ContainerState(
            f"id-{chunk.container.name}-{len(self.created)}",
            chunk.container.name,
            "running",
            True,
            None,
            {
                LABEL_MANAGED: "true",
                LABEL_DOMAIN: domain,
                LABEL_CHUNK: chunk.name,
                LABEL_HASH: config_hash,
                LABEL_SPEC: spec_label,
            },
        )
        self.containers[state.name] = state
        self.created.append(state.name)
        return state

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        return ""


def chunk(name: str, gate: dict[str, str], out: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "gatekeeper": {k: {"tv": v} for k, v in gate.items()},
        "flowout": {out: {"tv": "Y"}},
        "container": {"name": f"c-{name}", "image": "img", "env": env or {}},
    }


def make_run(
    tmp_path: Path,
    chunks: list[dict[str, Any]],
    engine: FakeEngine | None = None,
    timeout: float = 60,
    control: RunControl | None = None,
    runtime: str = "rt",
    **kwargs: Any,
) -> CpuxRun:
    plan = make_plan(parse_domain({"name": "d", "cpuxs": {"main": {"design_chunks": chunks}}}))
    store = SignalStore(tmp_path / runtime, "d", scope=plan.signals_produced_in(["main"]))
    store.start_run({"system_ready": PnR(tv="Y")})
    run = CpuxRun(
        plan=plan,
        cpux="main",
        store=store,
        engine=engine or FakeEngine(),
        config_path=str(tmp_path / "c.json"),  # type: ignore[arg-type]
        timeout_seconds=timeout,
        control=control,
        **kwargs,
    )
    run.images = {n: "sha256:abc" for n in plan.chunks}
    return run


def test_stall_is_found_when_a_finished_producer_left_the_signal_n(tmp_path):
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok"), chunk("b", {"a_ok": "Y"}, "b_ok")])
    assert run.find_stall() == []  # a has not run yet: not a stall
    run.set_phase("a", Phase.FAILED, "boom")
    run.store.set({"a_ok": PnR(tv="N")})
    blocked = run.find_stall()
    assert [b.chunk for b in blocked] == ["b"]
    assert blocked[0].render() == "b waits on a_ok is N (needs Y)"


def test_a_stall_names_the_chunks_behind_a_blocked_one_and_each_blocked_chunk_says_why(tmp_path):
    """db failed; migrate waits on db; web waits on migrate, which can never start: both are named."""
    run = make_run(
        tmp_path,
        [
            chunk("db", {"system_ready": "Y"}, "db_ok"),
            chunk("migrate", {"db_ok": "Y"}, "migrate_ok"),
            chunk("web", {"migrate_ok": "Y"}, "web_ok"),
        ],
    )
    run.set_phase("db", Phase.FAILED, "boom")
    run.store.set({"db_ok": PnR(tv="N")})
    assert [b.chunk for b in run.find_stall()] == ["migrate", "web"]
    run.supervise(poll=0.01)
    message = str(run.abort_error)
    assert "migrate waits on db_ok is N (needs Y) (db failed)" in message, message
    assert "web waits on migrate_ok is U (needs Y) (migrate can never start)" in message, message
    run.close()
    detail = run.progress["web"].detail
    assert detail == "never started: waits on migrate_ok is U (needs Y) (execution stalled in cpux main)", detail


def test_a_timeout_names_the_bring_ups_timeout_not_what_was_left_for_the_cpux(tmp_path):
    run = make_run(tmp_path, [chunk("a", {"approval": "Y"}, "a_ok")], timeout=0.01, run_timeout=3)
    run.supervise(poll=0.01)
    assert str(run.abort_error).startswith("timed out after 3s in cpux main"), run.abort_error


def test_no_stall_while_something_is_probing(tmp_path):
    run = make_run(
        tmp_path,
        [
            chunk("a", {"system_ready": "Y"}, "a_ok"),
            chunk("b", {"a_ok": "Y"}, "b_ok"),
            chunk("c", {"system_ready": "Y"}, "c_ok"),
        ],
    )
    run.set_phase("a", Phase.FAILED, "boom")
    run.set_phase("c", Phase.PROBING)
    assert run.find_stall() == []


def test_the_phase_counts_the_supervisor_reads_agree_with_the_chunks_after_any_sequence_of_changes(tmp_path):
    """`all_final` / `any_active` are kept by set_phase (O(1) a wake-up); they must say what a scan would say,
    also after phases were restored directly and counted again (`recount`, as restart does)."""
    import random

    names = [f"c{i}" for i in range(6)]
    run = make_run(tmp_path, [chunk(n, {"system_ready": "Y"}, f"{n}_ok") for n in names])
    rng = random.Random(7)

    def agrees() -> bool:
        phases = [p.phase for p in run.progress.values()]
        return run.all_final == all(p.final for p in phases) and run.any_active == any(p.active for p in phases)

    assert agrees() and not run.all_final and not run.any_active
    for _ in range(300):
        run.set_phase(rng.choice(names), rng.choice(list(Phase)))
        assert agrees()
    for n in names:
        run.set_phase(n, Phase.READY)
    assert run.all_final and not run.any_active
    run.progress["c0"].phase = Phase.PROBING  # restored directly: the counts are stale until recount
    run.recount()
    assert agrees() and run.any_active and not run.all_final


def test_waiting_on_an_external_signal_is_not_a_stall_but_times_out_with_a_hint(tmp_path):
    run = make_run(tmp_path, [chunk("a", {"approval": "Y"}, "a_ok")], timeout=0.01)
    assert run.find_stall() == []
    run.supervise(poll=0.01)
    assert "external signal approval never came" in str(run.abort_error)
    assert f"pnr signal set {tmp_path / 'c.json'} approval --tv Y" in str(run.abort_error)


def test_container_is_reused_when_unchanged_and_recreated_when_changed(tmp_path):
    engine = FakeEngine()
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], engine)
    first, action = run.drivers["a"].start()
    assert action == "created"
    again, action = run.drivers["a"].start()
    assert action == "reused" and again.id == first.id
    run.images["a"] = "sha256:new-image"
    _, action = run.drivers["a"].start()
    assert action.startswith("recreated (image changed") and engine.removed == [first.id]


def test_a_foreign_container_with_the_same_name_is_never_touched(tmp_path):
    engine = FakeEngine()
    engine.containers["c-a"] = ContainerState("foreign", "c-a", "running", True, None, {})
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], engine)
    with pytest.raises(EngineError, match="pnr did not create"):
        run.drivers["a"].start()
    assert engine.removed == [] and "c-a" in engine.containers


def test_env_expands_host_variables_and_reports_missing_ones(tmp_path):
    run = make_run(
        tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok", env={"URL": "db://${DB_USER}@h", "X": "${NOPE:-dflt}"})]
    )
    spec = run.plan.chunks["a"]
    assert expand_env(spec, "p", {"DB_USER": "bob"}) == {"URL": "db://bob@h", "X": "dflt"}
    with pytest.raises(ConfigError) as info:
        expand_env(spec, "cpuxs.main.design_chunks[0]", {}, source="config/x.json")
    assert "config/x.json: cpuxs.main.design_chunks[0].container.env.URL" in str(info.value)
    assert "'DB_USER' is not set" in str(info.value)


def test_close_marks_never_started_chunks_blocked(tmp_path):
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok"), chunk("b", {"a_ok": "Y"}, "b_ok")])
    run.set_phase("a", Phase.FAILED, "boom")
    run.close()
    assert run.progress["b"].phase == Phase.BLOCKED
    assert "failed" in str(run.outcome_error())


def test_change_reasons_are_field_level_and_never_show_secrets():
    from pnr.engines.converge import describe_changes, desired_state
    from pnr.model import ContainerSpec

    old = desired_state(
        ContainerSpec(name="web", image="img", ports={"8080": "18080"}), "sha256:" + "a" * 64, {"DB_URL": "s3cret"}
    )
    new = desired_state(
        ContainerSpec(name="web", image="img", ports={"8080": "18081"}), "sha256:" + "a" * 64, {"DB_URL": "other"}
    )
    reasons = describe_changes(old, new)
    assert reasons == ["ports.8080 changed 127.0.0.1:18080 -> 127.0.0.1:18081", "env.DB_URL changed"]
    assert "s3cret" not in repr(old) and "other" not in repr(new)


def test_probes_dial_the_remote_engines_host(monkeypatch):
    from pnr.engines.engine import Engine

    monkeypatch.setenv("DOCKER_HOST", "tcp://10.20.30.40:2376")
    assert Engine(client=object()).probe_host("127.0.0.1") == "10.20.30.40"
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@build-box")
    assert Engine(client=object()).probe_host("127.0.0.1") == "build-box"
    monkeypatch.delenv("DOCKER_HOST")
    assert Engine(client=object()).probe_host("0.0.0.0") == "127.0.0.1"
    assert Engine(client=object()).probe_host("127.0.0.2") == "127.0.0.2"


def test_two_runs_of_one_domain_in_one_process_do_not_see_each_other(tmp_path):
    """Observers and interrupts are scoped to one run (no process-wide listener list or run registry)."""
    import threading

    controls = [RunControl(), RunControl()]
    heard: list[list[Any]] = [[], []]
    for i, control in enumerate(controls):
        control.listen(heard[i].append)
    runs = [
        make_run(
            tmp_path,
            [chunk("a", {"system_ready": "Y"}, "a_ok"), chunk("b", {"a_ok": "Y"}, "b_ok")],
            control=controls[i],
            runtime=f"rt{i}",
        )
        for i in range(2)
    ]
    for i, run in enumerate(runs):
        controls[i].on_interrupt(lambda reason, run=run: run.abort(RuntimeError(reason)))

    def bring_up(run: CpuxRun) -> None:
        for name in run.names:
            run.wait_gate(name)
            run.drivers[name].bring_up(lambda _n: None)

    threads = [threading.Thread(target=bring_up, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for i in range(2):
        events = [e for e in heard[i] if isinstance(e, ProgressEvent)]
        assert [(e.chunk, e.phase) for e in events if e.phase == "ready"] == [("a", "ready"), ("b", "ready")]
        assert len(events) == 6  # starting, probing, ready for each of its own two chunks, none of the other run's
    assert controls[0].interrupt("stop the first") is True
    assert runs[0].aborted and not runs[1].aborted


def test_interrupt_before_a_part_registers_still_reaches_it():
    control = RunControl()
    assert control.interrupt("early") is False
    seen: list[str] = []
    control.on_interrupt(seen.append)
    assert seen == ["early"]


def test_lost_and_recovered_values_follow_the_status_mapping_else_the_flowout(tmp_path):
    mapped = chunk("a", {"system_ready": "Y"}, "a_ok")
    mapped["container"]["ports"] = {"80": "18080"}
    mapped["health_check"] = {
        "type": "tcp",
        "port_key": "80",
        "status_mapping": {
            "success": {"key": "a_ok", "tv": "Y", "response": ["up"]},
            "failure": {"key": "a_ok", "tv": "N"},
        },
    }
    run = make_run(tmp_path, [mapped, chunk("b", {"a_ok": "Y"}, "b_ok")])
    a, b = run.drivers["a"], run.drivers["b"]
    assert {k: v.tv for k, v in a.lost_values().items()} == {"a_ok": "N"}
    assert a.recovered_values()["a_ok"].response == ["up"]
    assert {k: (v.tv, v.response) for k, v in b.lost_values().items()} == {"b_ok": ("N", ["lost"])}
    assert {k: v.tv for k, v in b.recovered_values().items()} == {"b_ok": "Y"}


def test_a_failed_chunk_says_why_with_the_log_tail(tmp_path):
    class Dying(FakeEngine):
        def create_and_start(self, **kwargs: Any) -> ContainerState:
            state = super().create_and_start(**kwargs)
            dead = ContainerState(state.id, state.name, "exited", False, 3, state.labels)
            self.containers[state.name] = dead
            return dead

        def logs_tail(self, cid: str, lines: int = 20) -> str:
            return "boom: no config\nbye"

    from pnr.exceptions import ChunkFailed

    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], Dying())
    with pytest.raises(ChunkFailed) as info:
        run.drivers["a"].bring_up(lambda _n: None)
    assert "exited with code 3 before it was ready" in str(info.value)
    assert "    boom: no config" in str(info.value)
    assert run.progress["a"].phase == Phase.FAILED


def test_gate_slices_double_up_to_the_cap_and_the_retries_cover_the_whole_wait():
    assert [gate_slice(10, k) for k in range(1, 7)] == [10, 20, 40, 80, 160, GATE_SLICE_MAX]
    assert gate_slice(10, 40) == GATE_SLICE_MAX and gate_slice(600, 3) == 600  # a larger first slice stays
    assert gate_attempts(10, 0) == 1 and gate_attempts(10, 10) == 1 and gate_attempts(10, 10.5) == 2
    for seconds in (5, 115, 300, 3600, 86400):
        attempts = gate_attempts(10, seconds)
        covered = sum(gate_slice(10, k) for k in range(1, attempts + 1))
        assert covered >= seconds > covered - gate_slice(10, attempts)
    assert gate_attempts(10, 115) == 4  # was 12 with a fixed 10 s slice


def test_a_gate_slice_in_which_the_domain_moved_is_followed_by_another_not_a_retry(tmp_path):
    """A waiting chunk raises GateClosed (a Prefect retry) only after a slice in which no signal changed; while
    other chunks keep becoming ready, it keeps waiting in the same attempt."""
    import threading
    import time

    from pnr.lifecycle import GateClosed

    run = make_run(
        tmp_path,
        [
            chunk("a", {"system_ready": "Y"}, "a_ok"),
            chunk("b", {"system_ready": "Y"}, "b_ok"),
            chunk("c", {"a_ok": "Y", "b_ok": "Y"}, "c_ok"),
        ],
    )
    run.gate_slice = 0.4

    def moving() -> None:  # something changes every 0.2 s, then a_ok and b_ok, after ~1.2 s in all
        for i in range(5):
            time.sleep(0.2)
            run.store.set({f"other{i}": PnR(tv="Y")})
        time.sleep(0.2)
        run.store.set({"a_ok": PnR(tv="Y"), "b_ok": PnR(tv="Y")})

    writer = threading.Thread(target=moving)
    started = time.monotonic()
    writer.start()
    run.wait_gate("c")  # three slices of 0.4 s pass, each with a change: no GateClosed
    writer.join()
    assert time.monotonic() - started >= 1.1 and run.progress["c"].gate_checks == 1

    run.store.set({"a_ok": PnR(tv="N")})
    started = time.monotonic()
    with pytest.raises(GateClosed, match="c waits on a_ok is N"):
        run.wait_gate("c")  # nothing moves: the slice of this second attempt (0.8 s) ends it
    assert 0.75 < time.monotonic() - started < 1.5 and run.progress["c"].gate_checks == 2


def test_the_chunk_state_file_is_written_less_often_in_big_domains():
    assert persist_interval(3) == persist_interval(100) == PERSIST_EVERY
    assert persist_interval(300) == 0.75 and persist_interval(500) == 1.25 and persist_interval(5000) == 1.5


def test_probe_attempts_log_each_new_outcome_once_and_repeats_at_debug(tmp_path):
    from pnr.probes import Attempt

    class _Probe:
        def describe(self) -> str:
            return "http GET /"

    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")])
    info: list[str] = []
    debug: list[str] = []
    on_attempt = run.drivers["a"]._attempt_logger(_Probe(), info.append, debug.append)  # type: ignore[arg-type]
    # a server coming up flickers between two errors before it answers
    observations = [
        "[Errno 104] reset by peer",
        "disconnected",
        "[Errno 104] reset by peer",
        "disconnected",
        "disconnected",
    ]
    for n, text in enumerate(observations, 1):
        on_attempt(n, Attempt(False, text, 0.001))
    on_attempt(6, Attempt(True, "-> 200", 0.002))
    assert [line.split(": ", 2)[1] for line in info] == ["attempt 1", "attempt 2", "attempt 6"]
    assert len(debug) == 3 and run.progress["a"].first_probe_at is not None


def test_a_probing_chunk_asks_the_engine_about_its_container_at_most_every_quarter_second(tmp_path, monkeypatch):
    """A probe every 0.02 s must not become 50 `docker inspect`s a second; an exit is still seen within one
    ALIVE_EVERY_SECONDS (+ one interval), and the first attempt is preceded by a look."""
    import threading
    import time

    from pnr.lifecycle import chunk as chunk_mod
    from pnr.probes import Probe

    class Refused(Probe):
        def describe(self) -> str:
            return "tcp 127.0.0.1:1"

        def attempt(self) -> tuple[bool, str]:
            return False, "connection refused"

    class CountingEngine(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.inspects = 0

        def inspect(self, name_or_id: str) -> ContainerState | None:
            self.inspects += 1
            return super().inspect(name_or_id)

    def probed(deadline: float, exit_after: float | None) -> tuple[CountingEngine, str, float, int]:
        monkeypatch.setattr(
            chunk_mod, "make_probe", lambda check, ctx: Refused(interval=0.02, timeout=1, deadline=deadline)
        )
        engine = CountingEngine()
        spec = chunk("a", {"system_ready": "Y"}, "a_ok")
        spec["container"]["ports"] = {"80": "127.0.0.1:18080"}
        spec["health_check"] = {
            "type": "tcp",
            "port_key": "80",
            "status_mapping": {"failure": {"key": "a_ok", "response": ["no"], "tv": "N"}},
        }
        run = make_run(tmp_path, [spec], engine=engine, runtime=f"rt{deadline}")
        driver = run.drivers["a"]
        container, _ = driver.start()
        driver.progress.container_id = container.id
        if exit_after is not None:

            def exit_later() -> None:
                time.sleep(exit_after)
                engine.containers[container.name] = ContainerState(container.id, container.name, "exited", False, 3, {})

            threading.Thread(target=exit_later, daemon=True).start()
        engine.inspects = 0
        attempts: list[str] = []
        t0 = time.monotonic()
        with pytest.raises(ChunkFailed) as failed:
            driver.probe(debug=attempts.append)
        return engine, str(failed.value), time.monotonic() - t0, len(attempts)

    engine, message, took, repeats = probed(deadline=1.0, exit_after=None)
    assert "gave up after" in message and repeats >= 20  # ~50 attempts in the second
    assert 2 <= engine.inspects <= 6  # at most every 0.25 s (was: before every attempt)

    engine, message, took, _ = probed(deadline=5.0, exit_after=0.3)
    assert "exited with code 3 before it was ready" in message
    assert took < 0.3 + chunk_mod.ALIVE_EVERY_SECONDS + 0.2


def test_the_start_inspect_counts_as_the_probes_first_look_at_its_container(tmp_path, monkeypatch):
    """A chunk that just started (the engine said it runs) is not inspected again before its first attempt;
    a container that did not run at its start is looked at before any attempt, as before."""
    from pnr.lifecycle import chunk as chunk_mod
    from pnr.probes import Probe

    looks: list[int] = []

    class CountingEngine(FakeEngine):
        inspects = 0

        def inspect(self, name_or_id: str) -> ContainerState | None:
            self.inspects += 1
            return super().inspect(name_or_id)

    engine = CountingEngine()

    class Ready(Probe):
        def describe(self) -> str:
            return "tcp 127.0.0.1:1"

        def attempt(self) -> tuple[bool, str]:
            looks.append(engine.inspects)
            return True, "open"

    monkeypatch.setattr(chunk_mod, "make_probe", lambda check, ctx: Ready(interval=0.02, timeout=1, deadline=5))
    spec = chunk("a", {"system_ready": "Y"}, "a_ok")
    spec["container"]["ports"] = {"80": "127.0.0.1:18080"}
    spec["health_check"] = {
        "type": "tcp",
        "port_key": "80",
        "status_mapping": {"success": {"key": "a_ok", "response": ["yes"], "tv": "Y"}},
    }
    run = make_run(tmp_path, [spec], engine=engine)
    driver = run.drivers["a"]
    after_start: list[int] = []

    def run_probe(name: str) -> None:
        after_start.append(engine.inspects)
        driver.probe()

    driver.bring_up(run_probe)
    assert looks == after_start  # no inspect between the start and the first attempt
    driver._running_at = None  # e.g. probed again by the watch: it looks first
    driver.probe()
    assert looks[-1] == after_start[0] + 1


def test_a_passed_probe_without_a_success_mapping_writes_the_flowout_at_once(tmp_path, monkeypatch):
    """The chunk is ready when its probe passes; with nothing mapped, its flowout is what says so."""
    from pnr.lifecycle import chunk as chunk_mod
    from pnr.probes import Probe

    class Answers(Probe):
        def describe(self) -> str:
            return "tcp 127.0.0.1:18080"

        def attempt(self) -> tuple[bool, str]:
            return True, "open"

    monkeypatch.setattr(chunk_mod, "make_probe", lambda check, ctx: Answers(interval=0.02, timeout=1, deadline=5))
    spec = chunk("a", {"system_ready": "Y"}, "a_ok")
    spec["container"]["ports"] = {"80": "127.0.0.1:18080"}
    spec["health_check"] = {"type": "tcp", "port_key": "80"}
    run = make_run(tmp_path, [spec], timeout=3)  # an unwritten flowout fails the chunk when this runs out
    driver = run.drivers["a"]
    driver.bring_up(lambda _name: driver.probe())
    assert run.store.get("a_ok").tv == "Y"
    assert run.progress["a"].phase == Phase.READY


def _prepared(run: CpuxRun) -> Future[tuple[dict[str, str], set[str]]]:
    """What `start_preparing` hands over once the engines are ready: image ids, container names free."""
    done: Future[tuple[dict[str, str], set[str]]] = Future()
    done.set_result(({n: "sha256:abc" for n in run.names}, set()))
    return done


def _until(what: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


def test_a_head_start_starts_the_chunks_whose_gates_hold_and_their_bring_up_carries_on_from_there(tmp_path):
    """The first CPUX begins before Prefect has created its subflow run: the chunks free to go start at once, the
    rest wait for their gates as usual, and no container is started twice."""
    engine = FakeEngine()
    chunks = [chunk("a", {"system_ready": "Y"}, "a_ok"), chunk("b", {"a_ok": "Y"}, "b_ok")]
    chunks.append(chunk("c", {"system_ready": "Y"}, "c_ok"))
    run = make_run(tmp_path, chunks, engine)
    run.head_start(early=_prepared(run))
    _until(lambda: sorted(engine.created) == ["c-a", "c-c"])
    assert run.prepare() == {"a": "sha256:abc", "b": "sha256:abc", "c": "sha256:abc"}
    assert run.progress["a"].phase == Phase.STARTING and run.progress["a"].started_at is not None
    assert run.progress["b"].started_at is None  # its gate does not hold: nothing of it happened
    result = run.drivers["a"].bring_up(lambda _name: None)
    assert result["action"] == "created" and result["container"] == "c-a"
    assert run.progress["a"].phase == Phase.READY and run.store.get("a_ok").tv == "Y"
    run.drivers["b"].bring_up(lambda _name: None)  # a started ahead of its task; b in its own turn
    assert sorted(engine.created) == ["c-a", "c-b", "c-c"]


def test_a_chunk_brought_up_the_moment_prepare_returns_takes_the_head_starts_container(tmp_path):
    """The subflow's task may call `bring_up` as soon as `prepare` returns, before the head start's thread has
    got to that chunk: it carries on from the head start's container, and nothing of the head start comes after
    (no second start, no phase going back from ready to starting)."""
    engine = FakeEngine()
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], engine)
    holds = run.store.holds

    def slow_holds(*args: Any, **kwargs: Any) -> bool:  # the head start's thread looks at the gates slowly
        if threading.current_thread().name.startswith("pnr-head-start"):
            time.sleep(0.3)
        return holds(*args, **kwargs)

    run.store.holds = slow_holds  # type: ignore[method-assign]
    run.head_start(early=_prepared(run))
    run.prepare()
    result = run.drivers["a"].bring_up(lambda _name: None)
    time.sleep(0.6)  # a late start of the head start's own would have happened by now
    assert result["action"] == "created" and engine.created == ["c-a"]
    assert run.progress["a"].phase == Phase.READY


def test_an_engine_error_of_a_head_start_fails_the_chunk_where_its_bring_up_would_have(tmp_path):
    class Refusing(FakeEngine):
        def create_and_start(self, **kwargs: Any) -> ContainerState:
            raise EngineError("port 8080 is taken")

    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], Refusing())
    run.head_start(early=_prepared(run))
    run.prepare()
    with pytest.raises(ChunkFailed, match="port 8080 is taken"):
        run.drivers["a"].bring_up(lambda _name: None)
    assert run.progress["a"].phase == Phase.FAILED


def test_a_head_start_after_an_interrupt_starts_nothing_and_a_failed_preparation_is_raised_by_prepare(tmp_path):
    engine = FakeEngine()
    control = RunControl()
    control.interrupt("interrupted (Ctrl-C)")
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], engine, control=control)
    run.head_start(early=_prepared(run))
    run.prepare()
    time.sleep(0.2)
    assert engine.created == [] and run.progress["a"].started_at is None

    failed: Future[tuple[dict[str, str], set[str]]] = Future()
    failed.set_exception(EngineError("image img: not found"))
    run = make_run(tmp_path, [chunk("a", {"system_ready": "Y"}, "a_ok")], engine, runtime="rt2")
    run.head_start(early=failed)
    with pytest.raises(EngineError, match="image img: not found"):
        run.prepare()
    time.sleep(0.2)
    assert engine.created == []
