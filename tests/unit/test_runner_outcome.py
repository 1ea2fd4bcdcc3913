"""A run's client always gets an outcome, from the runner or in this process, even when the outcome's report
cannot be made."""

from __future__ import annotations

from typing import Any

import pytest

from pnr.backend import runner_process
from pnr.backend.protocol import UpRequest
from pnr.backend.run import conclude
from pnr.exceptions import EngineUnreachable
from pnr.lifecycle import RunControl, report
from pnr.model import parse_domain
from pnr.model.plan import make_plan


def _plan() -> Any:
    chunk = {"name": "a", "gatekeeper": {"system_ready": {"tv": "Y"}}, "container": {"name": "c-a", "image": "img"}}
    return make_plan(parse_domain({"name": "d", "cpuxs": {"main": {"design_chunks": [chunk]}}}))


def _failing_report(*args: Any, **kwargs: Any) -> Any:
    raise EngineUnreachable("the engine stopped answering", "default")


def test_a_report_that_fails_still_gives_the_client_how_the_run_ended(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(report, "run_report", _failing_report)
    plan, request = _plan(), UpRequest(config_path="d.json")
    control = RunControl()
    control.flow_run_id = "f1"
    ready = runner_process._outcome(plan, request, control, {"cpuxs": {}})
    assert ready.ok and ready.exit_status == 0 and ready.flow_run_id == "f1" and ready.status is None
    assert "status table could not be built: EngineUnreachable" in capsys.readouterr().err
    control.interrupt("interrupted (Ctrl-C)")
    stopped = runner_process._outcome(plan, request, control, None, KeyboardInterrupt())
    assert not stopped.ok and stopped.interrupted and stopped.exit_status == 1
    broken = conclude(plan, request, None, None, EngineUnreachable("the engine went away", "default"))
    assert not broken.ok and "went away" in broken.message and broken.error == "EngineUnreachable"
