"""`pnr up` reads and plans its config at most once, wherever the run goes and however it ends (the run itself,
the backend and the engine are fakes here; the config and the timeline are real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

import pnr.backend.run
import pnr.cli.up as up_module
from pnr.backend.choose import Backend
from pnr.backend.protocol import Accepted, UpOutcome
from pnr.exceptions import EngineUnreachable

CONFIG = Path(__file__).resolve().parents[2] / "config" / "quickstart.json"


def _up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, use_runner: bool, outcome: UpOutcome) -> list[str]:
    reads: list[str] = []
    real = up_module.read_plan

    def counting(config: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(str(config))
        return real(config, *args, **kwargs)

    def fake_run_up(request: Any, backend: Any, on_event: Any, on_accepted: Any, *args: Any, **kw: Any) -> UpOutcome:
        if use_runner:
            on_accepted(Accepted(domain="quickstart", chunks=2, cpuxs=["startup"]))
        return outcome

    monkeypatch.setattr(up_module, "read_plan", counting)
    monkeypatch.setattr(up_module, "_backend", lambda ephemeral, start=True: Backend("managed", use_runner=use_runner))
    monkeypatch.setattr(pnr.backend.run, "run_up", fake_run_up)
    with pytest.raises(typer.Exit) as exited:
        up_module.up(CONFIG, runtime_dir=tmp_path / "rt", timeline=tmp_path / "t.svg")
    assert exited.value.exit_code == 1
    assert (tmp_path / "t.svg").read_text(encoding="utf-8").startswith("<svg")
    return reads


@pytest.mark.parametrize("use_runner", [False, True], ids=["checked-here", "checked-by-the-runner"])
def test_a_failed_run_with_a_timeline_reads_the_config_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, use_runner: bool
) -> None:
    outcome = UpOutcome.failed(EngineUnreachable("engine lost"))  # the table: the runtime files, no engine asked
    assert _up(monkeypatch, tmp_path, use_runner, outcome) == [str(CONFIG)]
