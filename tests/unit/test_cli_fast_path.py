"""`pnr up CONFIG` (no option) is called without typer's parsing; every other command line goes through typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from pnr.cli import app as _app  # noqa: F401  (the module below, loaded)

cli = sys.modules["pnr.cli.app"]


@pytest.mark.parametrize(
    "argv",
    [["up"], ["up", "--build", "c.json"], ["up", "-v", "c.json"], ["up", "--help"], ["down", "c.json"], ["up", ""]],
)
def test_anything_but_up_config_goes_through_typer(argv: list[str]) -> None:
    assert cli._fast_path(argv) is None


def test_up_config_calls_up_with_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_up(config: Path, *args: Any, **kwargs: Any) -> None:
        calls.append((config, args, kwargs))
        raise typer.Exit(3)

    monkeypatch.setattr(cli, "up", fake_up)
    with pytest.raises(SystemExit) as exited:  # typer.Exit becomes the exit status, as under typer
        cli._run_app(["up", "config/dev_stack.json"])
    assert exited.value.code == 3
    assert calls == [(Path("config/dev_stack.json"), (), {})]


def test_up_config_skips_typers_parameter_adapters(tmp_path: Path) -> None:
    """What the fast path is for: typer builds a pydantic adapter per parameter (pydantic + entry points);
    a config that is not there fails the same way, exit 2, without any of it."""
    code = (
        "import sys; sys.argv = ['pnr', 'up', sys.argv[1]]\n"
        "from pnr.cli.app import _run_app\n"
        "try:\n    _run_app(sys.argv[1:])\n"
        "except SystemExit as e:\n    print('exit', e.code, 'typer._adapters' in sys.modules, file=sys.stderr)\n"
    )
    env = {"PNR_STATE_DIR": str(tmp_path / "state"), "PNR_RUNNER": "false", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.json")], capture_output=True, text=True, env=env
    )
    assert "exit 2 False" in done.stderr, done.stderr
    assert "missing.json" in done.stderr
