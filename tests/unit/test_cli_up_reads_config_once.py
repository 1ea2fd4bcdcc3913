"""`pnr up` parses, calls `run_up` once and renders what it hears and returns: the config is read and planned once
per run, below the CLI, and the CLI never reads it (the flow, the backend and the engine are fakes here; the
config, the plan, the status table and the timeline are real)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

import pnr.backend.run as run_module
import pnr.cli.up as up_module
import pnr.lifecycle.ops
import pnr.lifecycle.report
import pnr.model.plan
import pnr.prefect.flows
from pnr.backend.choose import Backend
from pnr.backend.protocol import Accepted, BackendChosen, UpEvent, UpOutcome, UpRequest
from pnr.exceptions import ChunkFailed
from pnr.model import Plan
from pnr.records import ChunkStatus, DomainStatus, ProgressEvent, RunTimeline, TimelineChunk
from tests.unit.fakes import FakeEngineBase

CONFIG = Path(__file__).resolve().parents[2] / "config" / "quickstart.json"


def _failed_outcome() -> UpOutcome:
    status = DomainStatus(
        domain="quickstart",
        signals={},
        chunks={
            "redis": ChunkStatus("completed", "default", "quickstart_redis", "id1", "startup", "ready", None),
            "ui": ChunkStatus("failed", "default", "quickstart_ui", "id2", "startup", "failed", "exited 1\nmore"),
        },
        runtime_dir="rt",
    )
    times = [
        TimelineChunk("redis", "ready", 10.0, 10.5, 10.6, 11.0),
        TimelineChunk("ui", "failed", 11.0, 11.2, 11.3, None),
    ]
    timeline = RunTimeline("quickstart", times, {"redis": [], "ui": ["redis"]}, 12.0)
    failed = UpOutcome.failed(ChunkFailed("ui failed: exited 1"), "run-1").with_report(status, timeline)
    return UpOutcome(**{**failed.__dict__, "flow_run_url": "http://ui/runs/flow-run/run-1"})


def _never(*args: object, **kwargs: object) -> Plan:
    raise AssertionError("the CLI read the config")


def test_the_cli_renders_the_events_and_the_outcome_and_never_reads_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[UpRequest] = []

    def fake_run_up(request: UpRequest, on_event: Callable[[UpEvent], None], **kwargs: object) -> UpOutcome:
        seen.append(request)
        on_event(Accepted("quickstart", 2, ["startup"], False, "rt"))
        on_event(BackendChosen("http://ui", started_now=True))
        on_event(ProgressEvent("quickstart", "startup", "ui", "failed", "exited 1", 1.0))
        return _failed_outcome()

    monkeypatch.setattr(pnr.model.plan, "load_plan", _never)
    monkeypatch.setattr(pnr.model.plan, "check_config", _never)
    monkeypatch.setattr(run_module, "run_up", fake_run_up)
    with pytest.raises(typer.Exit) as exited:
        up_module.up(CONFIG, runtime_dir=tmp_path / "rt", timeline=tmp_path / "t.svg")
    assert exited.value.exit_code == 1
    assert seen == [UpRequest(str(CONFIG), runtime_dir=str(tmp_path / "rt"))]
    said = capsys.readouterr()
    assert "pnr up quickstart (2 chunks, cpux startup); runtime rt" in said.out
    assert "started pnr's Prefect server in the background: UI http://ui" in said.out
    assert "quickstart_ui" in said.out and "exited 1" in said.out and "more" not in said.out  # the table
    assert f"timeline: {tmp_path / 't.svg'}" in said.out
    assert "flow run: http://ui/runs/flow-run/run-1" in said.out
    assert "failed: ui failed: exited 1" in said.err
    picture = ET.fromstring((tmp_path / "t.svg").read_text(encoding="utf-8"))
    rows = [g.get("data-chunk") for g in picture.iter("{http://www.w3.org/2000/svg}g") if g.get("data-chunk")]
    assert rows == ["redis", "ui"]


def _in_process(monkeypatch: pytest.MonkeyPatch, flow: Callable[..., dict[str, object]]) -> list[str]:
    """run_up on a backend that runs the flow here (`flow` stands for it); returns each config path planned."""
    planned: list[str] = []
    real = pnr.model.plan.load_plan

    def counting(config_path: str) -> Plan:
        planned.append(config_path)
        return real(config_path)

    monkeypatch.setattr(pnr.model.plan, "load_plan", counting)
    monkeypatch.setattr(run_module, "choose_backend", lambda ephemeral, start=True: Backend("external"))
    monkeypatch.setattr(pnr.prefect.flows, "bring_up", flow)
    monkeypatch.setattr(pnr.lifecycle.report, "Engine", FakeEngineBase)
    return planned


def test_an_in_process_run_plans_the_config_once_and_its_outcome_has_the_table_and_timeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def flow(config_path: str, **params: object) -> dict[str, object]:
        from pnr.lifecycle import current_control

        plan = current_control().plan_of(config_path) or pnr.model.plan.load_plan(config_path)
        row = {"phase": "ready", "container": "c", "container_id": "id", "created_at": 1.0, "ready_at": 2.0}
        return {"domain": plan.domain.name, "cpuxs": {"startup": {n: row for n in plan.chunks}}, "signals": {}}

    planned = _in_process(monkeypatch, flow)
    events: list[UpEvent] = []
    outcome = run_up_here(tmp_path, events.append)
    assert planned == [str(CONFIG)]
    assert outcome.ok and outcome.exit_status == 0 and outcome.chunk_count == 2
    assert isinstance(events[0], Accepted) and events[0].domain == "quickstart" and events[0].chunks == 2
    assert isinstance(events[1], BackendChosen) and not events[1].started_now
    assert outcome.status is not None and set(outcome.status.chunks) == {"redis", "ui"}
    assert outcome.timeline is not None and [c.name for c in outcome.timeline.chunks] == ["redis", "ui"]
    assert outcome.timeline.depends_on["ui"] == ["redis"]


def test_a_failed_in_process_run_has_the_table_and_the_timeline_up_to_its_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def flow(config_path: str, **params: object) -> dict[str, object]:
        raise ChunkFailed("ui failed: exited 1")

    planned = _in_process(monkeypatch, flow)
    outcome = run_up_here(tmp_path, lambda event: None)
    assert planned == [str(CONFIG)]
    assert not outcome.ok and outcome.exit_status == 1 and outcome.message == "ui failed: exited 1"
    assert outcome.status is not None and outcome.status.chunks["ui"].status == "ready"  # never started
    assert outcome.timeline is not None and outcome.timeline.end is not None


def test_a_bad_config_is_exit_2_with_nothing_chosen_or_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "cpuxs": {}, "typo": 1}', encoding="utf-8")
    chosen: list[bool] = []
    monkeypatch.setattr(run_module, "choose_backend", lambda ephemeral, start=True: chosen.append(start))
    events: list[UpEvent] = []
    outcome = run_module.run_up(UpRequest(str(bad), runtime_dir=str(tmp_path / "rt")), events.append)
    assert outcome.exit_status == 2 and str(bad) in outcome.message and outcome.status is None
    assert chosen == [False] and events == []  # only asked whether pnr's runner is up: nothing started


def run_up_here(tmp_path: Path, on_event: Callable[[UpEvent], None]) -> UpOutcome:
    return run_module.run_up(UpRequest(str(CONFIG), runtime_dir=str(tmp_path / "rt")), on_event)


def test_the_pnr_up_client_imports_no_model_lifecycle_or_engine(tmp_path: Path) -> None:
    """The thin client: handed its events and outcome, `pnr up` renders them without pnr's models, lifecycle
    or engines (what the resident runner has loaded already)."""
    code = (
        "import sys\n"
        "import pnr.backend.run as run\n"
        "from pnr.backend.protocol import Accepted, UpOutcome\n"
        "def fake(request, on_event, **kw):\n"
        "    on_event(Accepted('d', 1, ['main'], False, 'rt'))\n"
        "    return UpOutcome.done({'cpuxs': {'main': {'a': {}}}})\n"
        "run.run_up = fake\n"
        "from pnr.cli import run_line\n"
        "code = 0\n"
        "try:\n    run_line(['up', sys.argv[1]])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "loaded = sorted({m.split('.')[1] for m in sys.modules if m.startswith('pnr.')})\n"
        "print('exit', code, loaded, file=sys.stderr)\n"
    )
    env = {**os.environ, "PNR_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", code, str(CONFIG)], capture_output=True, text=True, env=env)
    assert "exit 0 [" in done.stderr, done.stderr
    loaded = done.stderr.rsplit("exit 0", 1)[1]
    for layer in ("model", "lifecycle", "engines", "prefect"):
        assert f"'{layer}'" not in loaded, done.stderr
    assert "up: 1 chunk completed" in done.stdout


def test_a_dry_run_plans_below_the_cli_and_the_cli_prints_its_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pnr.lifecycle.ops, "Engine", FakeEngineBase)  # an empty engine: every image is missing
    report = pnr.lifecycle.ops.dry_run(str(CONFIG), tmp_path / "rt")
    assert report.domain == "quickstart" and not report.refused
    assert [(a.chunk, a.container, a.action) for a in report.actions] == [
        ("redis", "quickstart_redis", "create"),
        ("ui", "quickstart_ui", "create"),
    ]
    up_module.up(CONFIG, runtime_dir=tmp_path / "rt", dry_run=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pnr up --dry-run quickstart (nothing was touched)"
    assert lines[1].split()[:3] == ["redis", "quickstart_redis", "create"]
    assert lines[1].endswith("image redis:7-alpine would be pulled")
