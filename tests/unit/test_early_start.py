"""The early start (pnr.lifecycle.early) with an injected fake engine: it brings a chain up on pnr's own gates,
stops cleanly when its flow run takes over, and the run that takes over keeps what it saw (action and times) for
exactly the containers it started."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from pnr.engines.engine import LABEL_RUN
from pnr.engines.protocol import ContainerState
from pnr.exceptions import EngineError
from pnr.lifecycle import CpuxRun, EarlyFacts, EarlyStart, Phase, ProgressEvent
from pnr.lifecycle.early import EARLY_ID_PREFIX
from pnr.model import PnR, parse_domain
from pnr.model.plan import make_plan
from pnr.runtime.store import SignalStore
from tests.unit.test_lifecycle import FakeEngine, chunk


class LabellingEngine(FakeEngine):
    """The fake engine, labelling each container with the run that started it (as the Docker engine does)."""

    def create_and_start(self, *, flow_run_id: str = "", **kw: Any) -> ContainerState:
        state = super().create_and_start(**kw)
        labelled = dataclasses.replace(state, labels={**state.labels, LABEL_RUN: flow_run_id})
        self.containers[state.name] = labelled
        return labelled


def chain(tmp_path: Path, external: bool = False) -> Any:
    """a → b → c; with `external`, b also waits on a signal nobody sets."""
    gate_b = {"a_ok": "Y", **({"go": "Y"} if external else {})}
    chunks = [chunk("a", {"system_ready": "Y"}, "a_ok"), chunk("b", gate_b, "b_ok"), chunk("c", {"b_ok": "Y"}, "c_ok")]
    config = tmp_path / "c.json"
    config.write_text("{}")
    return make_plan(parse_domain({"name": "d", "cpuxs": {"main": {"design_chunks": chunks}}})), str(config)


def early_start(tmp_path: Path, engine: FakeEngine, external: bool = False) -> tuple[EarlyStart, list[ProgressEvent]]:
    plan, config = chain(tmp_path, external)
    heard: list[ProgressEvent] = []
    early = EarlyStart(
        plan,
        config,
        tmp_path / "rt",
        ["main"],
        30.0,
        on_event=lambda e: heard.append(e),
        engine=engine,  # type: ignore[arg-type]
    )
    return early, heard


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_an_early_start_brings_the_chain_up_and_labels_its_containers_with_its_own_id(tmp_path):
    engine = LabellingEngine()
    early, heard = early_start(tmp_path, engine)
    assert early.id.startswith(EARLY_ID_PREFIX)
    early.start()
    wait_for(lambda: early.ready() == {"a", "b", "c"})
    assert early.hand_over() == {"a": "ready", "b": "ready", "c": "ready"}
    assert engine.created == ["c-a", "c-b", "c-c"]
    assert {c.labels[LABEL_RUN] for c in engine.containers.values()} == {early.id}
    assert [e.chunk for e in heard if isinstance(e, ProgressEvent) and e.phase == "ready"] == ["a", "b", "c"]
    assert early.error is None


def test_hand_over_stops_it_quietly_and_leaves_no_thread_running(tmp_path):
    engine = LabellingEngine()
    early, heard = early_start(tmp_path, engine, external=True)  # b waits on "go", which never comes
    before = {t.name for t in threading.enumerate()}
    early.start()
    wait_for(lambda: early.ready() == {"a"})
    heard_before = len(heard)
    assert early.hand_over(timeout=10) == {"a": "ready"}
    assert engine.created == ["c-a"]  # b and c never started
    assert not [t for t in threading.enumerate() if t.name.startswith("pnr-early") and t.name not in before]
    assert len(heard) == heard_before  # the caller hears nothing of the stop: the flow run goes on


def test_the_run_that_takes_over_keeps_the_early_starts_action_and_times_for_its_containers_only(tmp_path):
    engine = LabellingEngine()
    early, _ = early_start(tmp_path, engine)
    early.start()
    wait_for(lambda: early.ready() == {"a", "b", "c"})
    early.hand_over()
    facts = EarlyFacts.read(tmp_path / "rt", "d", early.id)
    assert facts is not None and EarlyFacts.read(tmp_path / "rt", "d", "another-run") is None
    seen = early.runs[0].progress["a"]
    a = engine.containers["c-a"]
    assert facts.of("a", a) == (
        "created",
        {"created_at": seen.created_at, "started_at": seen.started_at, "ready_at": seen.ready_at},  # never probed
    )
    other = ContainerState(a.id, a.name, "running", True, None, {**a.labels, LABEL_RUN: "someone-else"})
    assert facts.of("a", other) is None  # same container id, another run's label: not taken over

    # the flow run's CPUX run over the same engine: it reuses the container, and reports it as the early start did
    plan, config = chain(tmp_path)
    store = SignalStore(tmp_path / "rt", "d", scope=plan.signals_produced_in(["main"]))
    store.start_run({"system_ready": PnR(tv="Y")})
    run = CpuxRun(
        plan=plan, cpux="main", store=store, engine=engine, config_path=config, timeout_seconds=30, early=facts
    )
    run.images = dict(early.runs[0].images)  # what the flow run's preparation finds: the same images
    result = run.drivers["a"].bring_up(lambda name: None)
    taken = run.progress["a"]
    assert result["action"] == "created" and result["container_id"] == a.id and engine.created == ["c-a", "c-b", "c-c"]
    assert (taken.started_at, taken.ready_at, taken.phase) == (seen.started_at, seen.ready_at, Phase.READY)


class FreezingEngine(LabellingEngine):
    """Stops answering once `frozen` is set: pings fail, and a container start under way hangs until released."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = threading.Event()
        self.released = threading.Event()

    def ping(self) -> None:
        if self.frozen.is_set():
            raise EngineError("the engine does not answer")

    def create_and_start(self, **kw: Any) -> ContainerState:
        if kw["chunk"].name == "b":
            self.frozen.set()
            self.released.wait(30)
        return super().create_and_start(**kw)


def test_an_engine_that_stops_answering_ends_the_early_start_without_waiting_for_the_call_stuck_in_it(tmp_path):
    engine = FreezingEngine()
    early, _ = early_start(tmp_path, engine)
    try:
        early.start()
        wait_for(lambda: early.engine_lost is not None)
        began = time.monotonic()
        early.hand_over(timeout=20)
        assert time.monotonic() - began < 5  # b's start still hangs in the engine: not waited for
        assert "stopped answering" in str(early.engine_lost) and "b (starting)" in str(early.engine_lost)
    finally:
        engine.released.set()


def test_what_the_early_start_showed_is_not_shown_again_when_the_flow_run_does_it_again():
    from pnr.backend.run import _not_again

    heard: list[object] = []
    forward = _not_again(heard.append, {"a": "ready", "b": "probing"})

    def event(chunk: str, phase: str, what: str | None = None) -> ProgressEvent:
        return ProgressEvent("d", "main", chunk, phase, "", 0.0, what)

    sent = [
        event("a", "waiting"),  # all of a again: not shown
        event("a", "probing"),
        event("a", "ready"),
        event("b", "waiting"),  # b was under way: not shown waiting again, but its end is
        event("b", "probing"),
        event("b", "ready"),
        event("c", "waiting"),  # the early start never reached c: all of it
        event("c", "ready"),
        event("a", "failed"),  # a failure always
        event("a", "lost", what="lost"),  # and the watch's transitions
    ]
    for e in sent:
        forward(e)
    assert heard == [sent[4], sent[5], sent[6], sent[7], sent[8], sent[9]]


def test_an_early_start_goes_through_the_cpuxs_in_order(tmp_path):
    engine = LabellingEngine()
    one = {"design_chunks": [chunk("a", {"system_ready": "Y"}, "a_ok")]}
    two = {"design_chunks": [chunk("b", {"a_ok": "Y"}, "b_ok")]}
    plan = make_plan(parse_domain({"name": "d", "cpuxs": {"one": one, "two": two}}))
    (tmp_path / "c.json").write_text("{}")
    early = EarlyStart(plan, str(tmp_path / "c.json"), tmp_path / "rt", plan.cpux_order, 30.0, engine=engine)  # type: ignore[arg-type]
    early.start()
    wait_for(lambda: early.ready() == {"a", "b"})
    early.hand_over()
    assert [r.cpux for r in early.runs] == ["one", "two"] and engine.created == ["c-a", "c-b"]
