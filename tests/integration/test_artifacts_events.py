"""Artifacts and events of a bring-up: pure renderers (no daemon), then real runs against the real engine and
Prefect's test harness, with Prefect's own asserting events worker capturing what pnr emits."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest
from conftest import free_port, http_chunk, write_config

from pnr.lifecycle import ChunkProgress, Phase
from pnr.model import Domain, PnR
from pnr.model.plan import make_plan
from pnr.prefect.artifacts import (
    RunArtifacts,
    artifact_key,
    critical_path,
    plan_markdown,
    progress_interval,
    signals_table,
    timeline_markdown,
)
from pnr.prefect.events import RunEvents


def _domain(name: str, chunks: list[dict[str, Any]], cpux: str = "main") -> dict[str, Any]:
    return {"name": name, "cpuxs": {cpux: {"design_chunks": chunks}}}


def _diamond(name: str, prefix: str = "p-", delay_c: float = 0.0) -> dict[str, Any]:
    """a -> (b, c) -> d: d waits on both; c is the slow one."""
    return _domain(
        name,
        [
            http_chunk("a", free_port(), prefix=prefix),
            http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=prefix),
            http_chunk("c", free_port(), gate={"a_ready": "Y"}, delay=delay_c, prefix=prefix),
            http_chunk("d", free_port(), gate={"b_ready": "Y", "c_ready": "Y"}, prefix=prefix, check="http"),
        ],
    )


# -- units ----------------------------------------------------------------------------------------


def test_artifact_keys_are_stable_and_in_prefects_alphabet():
    assert artifact_key("dev_stack", "signals") == "pnr-dev-stack-signals"
    assert artifact_key("My.Stack__2", "timeline") == "pnr-my-stack-2-timeline"
    assert artifact_key("dev_stack", "plan") == artifact_key("dev_stack", "plan")


def test_timeline_marks_the_chain_that_decided_the_last_ready_chunk():
    plan = make_plan(Domain.model_validate(_diamond("units")))
    t = 1000.0

    def prog(name: str, started: float, probe: float, ready: float) -> ChunkProgress:
        return ChunkProgress(
            name,
            "main",
            phase=Phase.READY,
            created_at=t,
            started_at=t + started,
            first_probe_at=t + probe,
            ready_at=t + ready,
        )

    progress = {
        "a": prog("a", 0.1, 0.2, 1.0),
        "b": prog("b", 1.1, 1.2, 1.5),
        "c": prog("c", 1.1, 1.2, 3.0),
        "d": prog("d", 3.1, 3.2, 3.5),
    }
    assert critical_path(plan, progress) == ["a", "c", "d"]
    md = timeline_markdown(plan, progress)
    assert "Critical path: a → c → d (3.50 s to the last ready chunk)" in md
    rows = {
        line.split("|")[2].strip(): line for line in md.splitlines() if line.startswith("| ") and "chunk" not in line
    }
    assert rows["**c**"].startswith("| ★ |") and rows["b"].startswith("|  |")
    # created -> started -> first probe -> ready, and durations: wait 1.10, start 0.10, probe 1.80, total 3.00
    assert "| 0.00 | 1.10 | 1.20 | 3.00 | 1.10 | 0.10 | 1.80 | 3.00 |" in rows["**c**"]


def test_timeline_of_a_failed_run_names_the_failure_and_has_no_path():
    plan = make_plan(Domain.model_validate(_diamond("units")))
    progress = {
        "a": ChunkProgress("a", "main", phase=Phase.FAILED, detail="a: container exited with code 3\nmore"),
        "b": ChunkProgress("b", "main", phase=Phase.BLOCKED, detail="stalled"),
    }
    md = timeline_markdown(plan, progress)
    assert "Critical path" not in md
    assert "`a` failed: a: container exited with code 3" in md and "more" not in md


def test_plan_markdown_and_signal_table():
    plan = make_plan(Domain.model_validate(_diamond("units")))
    md = plan_markdown(plan, ["main"])
    assert "```mermaid\nflowchart LR" in md and "| main | 2 | **d** |" in md
    rows = {r["signal"]: r for r in signals_table({"a_ready": PnR(tv="Y")}, plan)}
    assert rows["a_ready"]["tv"] == "Y" and rows["a_ready"]["produced by"] == "a"
    assert rows["d_ready"]["tv"] == "U"  # never written: unknown
    assert rows["system_ready"]["waited on by"] == "a"


def test_the_progress_artifact_is_updated_less_often_in_big_domains():
    assert progress_interval(3) == progress_interval(50) == 0.5
    assert progress_interval(100) == 1.0 and progress_interval(500) == 5.0
    assert progress_interval(5000) == 5.0  # the UI still moves


@pytest.mark.parametrize("setting", ["", "1", "false"])
def test_pnr_chunk_events_false_leaves_out_the_per_chunk_events_of_a_bring_up(tmp_path, monkeypatch, setting):
    """The setting comes from the environment of whoever asked for the run (RunControl.environ, read once by
    bring_up), as the runner runs it; failures, the domain's own events and what a watch emits still go."""
    import pnr.prefect.events as events_module
    from pnr.lifecycle import ProgressEvent, RunControl, RunNote
    from pnr.runtime.store import SignalStore
    from pnr.settings import run_settings

    sent: list[str] = []
    monkeypatch.setattr(events_module, "_may_emit", lambda: True)
    monkeypatch.setattr("prefect.events.emit_event", lambda **kw: sent.append(kw["event"]))
    plan = make_plan(Domain.model_validate(_diamond("lean")))
    store = SignalStore(tmp_path, "lean")
    control = RunControl(environ={"PNR_CHUNK_EVENTS": setting})
    events = RunEvents(plan, ["main"], store, control, "cfg.json", run_settings(control.environ).chunk_events)
    events.start()
    for chunk, phase in (("a", "starting"), ("a", "ready"), ("b", "failed")):
        control.publish(ProgressEvent("lean", "main", chunk, phase, "", time.time()))
    store.set({"a_ready": PnR(tv="Y")})
    events.finish(None)
    control.publish(RunNote("lean", "watch.started", "watching", {}))
    store.set({"a_ready": PnR(tv="N")})  # a regression seen by the watch
    events.close()
    per_chunk = ["pnr.chunk.starting", "pnr.chunk.ready", "pnr.signal.changed"]
    always = ["pnr.domain.up.started", "pnr.chunk.failed", "pnr.domain.up.completed", "pnr.domain.watch.started"]
    if setting == "false":
        assert sent == [*always, "pnr.signal.changed"]
    else:
        assert sent == [*always[:1], *per_chunk[:2], "pnr.chunk.failed", per_chunk[2], *always[2:], per_chunk[2]]


def test_observers_outside_a_flow_run_do_nothing_and_say_nothing(tmp_path, recwarn, caplog, monkeypatch):
    import prefect.artifacts
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pnr.runtime.store import SignalStore

    calls: list[str] = []  # no API call at all: Prefect would start a temporary server just for it
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: calls.append(kw["event"]))
    for name in ("create_markdown_artifact", "create_table_artifact", "create_progress_artifact"):
        monkeypatch.setattr(prefect.artifacts, name, lambda *a, _n=name, **k: calls.append(_n))
    plan = make_plan(Domain.model_validate(_diamond("outside")))
    store = SignalStore(tmp_path, "outside")
    with warnings.catch_warnings(), temporary_settings(restore_defaults={PREFECT_API_URL}):
        warnings.simplefilter("error")
        from pnr.lifecycle import RunControl

        control = RunControl()
        for observer in (RunArtifacts(plan, ["main"], store, control), RunEvents(plan, ["main"], store, control)):
            observer.start()
            store.set({"a_ready": PnR(tv="Y")})
            observer.finish(None)
    assert calls == []
    assert not recwarn.list
    assert not [r for r in caplog.records if r.levelno >= 30]


# -- real runs ------------------------------------------------------------------------------------


@pytest.fixture
def asserting_events_worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Prefect's own testing pattern (prefect.testing.fixtures): every emitted event is recorded in memory."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_a, **_k: worker)
    try:
        yield worker
    finally:
        worker.drain()


def _latest(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    return found[0]


def _pnr_events(worker: Any) -> list[Any]:
    worker.drain()
    return [e for e in worker._client.events if e.event.startswith("pnr.")]


@pytest.mark.docker
@pytest.mark.prefect
def test_a_run_publishes_artifacts_and_events(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup, asserting_events_worker
):
    import json

    from pnr.prefect.flows import bring_up

    cleanup.append(domain_name)
    cfg = write_config(tmp_path / "diamond.json", _diamond(domain_name, prefix=domain_name + "-", delay_c=1.5))
    t0 = time.monotonic()
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    elapsed = time.monotonic() - t0

    plan = _latest(artifact_key(domain_name, "plan"))
    assert plan.type == "markdown" and "```mermaid" in plan.data
    table = _latest(artifact_key(domain_name, "signals"))
    rows = {r["signal"]: r["tv"] for r in json.loads(table.data)}
    assert rows == {"system_ready": "Y", "a_ready": "Y", "b_ready": "Y", "c_ready": "Y", "d_ready": "Y"}
    timeline = _latest(artifact_key(domain_name, "timeline"))
    assert "Critical path: a → c → d" in timeline.data, timeline.data
    progress = _latest(artifact_key(domain_name, "progress"))
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert "4/4 chunks ready" in (progress.description or "")

    events = _pnr_events(asserting_events_worker)
    names = [e.event for e in events]
    assert names[0] == "pnr.domain.up.started" and names[-1] == "pnr.domain.up.completed"
    ready = [e for e in events if e.event == "pnr.chunk.ready"]
    assert sorted(e.resource.id for e in ready) == [f"pnr.chunk.{domain_name}.{c}" for c in "abcd"]
    assert ready[0].resource["pnr.chunk"] == "a" and ready[-1].resource["pnr.chunk"] == "d"
    assert all(e.related[0].id == f"pnr.domain.{domain_name}" for e in ready)
    assert any(r.role == "flow-run" for r in ready[0].related), "no flow-run related resource attached by Prefect"
    changed = {e.resource.id: e for e in events if e.event == "pnr.signal.changed"}
    for sig in ("a_ready", "b_ready", "c_ready", "d_ready"):
        e = changed[f"pnr.signal.{domain_name}.{sig}"]
        assert e.resource["pnr.tv"] == "Y" and e.payload["old"]["tv"] == "U" and e.payload["new"]["tv"] == "Y"
    # a chunk whose gate is closed says at once what it waits on (no retry needed to see it in the UI)
    logs = _flow_run_logs(f"{domain_name}.main")
    assert any(m.startswith("waits on ") and "b_ready is U (needs Y)" in m for m in logs), logs  # d, at once
    assert any(m == "gate open: b_ready=Y, c_ready=Y" for m in logs), logs
    print(f"\nbring-up of 4 chunks with artifacts and events: {elapsed:.2f}s")


def _flow_run_logs(flow_run_name: str) -> list[str]:
    """The messages logged in the flow run named `flow_run_name` (its task runs' too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10, at_exit=False)  # the log worker batches: send what is queued first
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return [log.message for log in logs]


@pytest.mark.docker
@pytest.mark.prefect
def test_a_failed_run_says_so_in_artifacts_and_events(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup, asserting_events_worker
):
    import json

    from pnr.exceptions import PnrError
    from pnr.prefect.flows import bring_up

    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [
        http_chunk("a", free_port(), prefix=pre),
        http_chunk(
            "b", free_port(), gate={"a_ready": "Y"}, prefix=pre, deadline=1.0, command=["sh", "-c", "exec sleep 600"]
        ),
        http_chunk("c", free_port(), gate={"b_ready": "Y"}, prefix=pre),
    ]
    cfg = write_config(tmp_path / "fails.json", _domain(domain_name, chunks))
    with pytest.raises(PnrError):
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)

    rows = {r["signal"]: r["tv"] for r in json.loads(_latest(artifact_key(domain_name, "signals")).data)}
    assert rows["a_ready"] == "Y" and rows["b_ready"] == "N" and rows["c_ready"] == "U"
    progress = _latest(artifact_key(domain_name, "progress"))
    assert round(float(progress.data)) == 33 and "failed" in (progress.description or "")
    assert "`b` failed" in _latest(artifact_key(domain_name, "timeline")).data

    events = _pnr_events(asserting_events_worker)
    by_name = {e.event: e for e in events}
    assert by_name["pnr.chunk.failed"].resource.id == f"pnr.chunk.{domain_name}.b"
    assert by_name["pnr.chunk.blocked"].resource.id == f"pnr.chunk.{domain_name}.c"
    failed = by_name["pnr.domain.up.failed"]
    assert failed.resource.id == f"pnr.domain.{domain_name}" and "stalled" in failed.payload["message"]
    assert "pnr.domain.up.completed" not in by_name
