"""A plain `pnr up` line is read by `up`'s own click parser and called without typer's value adapters; every other
command line goes through typer."""

from __future__ import annotations

import os
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
    [
        ["up"],
        ["up", "--help"],
        ["down", "c.json"],
        ["up", ""],
        ["up", "a.json", "b.json"],
        ["up", "--build"],  # no config
        ["up", "c.json", "--build", "--build"],
        ["up", "c.json", "--cpux", "a", "--cpux", "b"],
        ["up", "c.json", "--timeout"],  # no value
        ["up", "c.json", "--timeout", "0"],  # below its min (0.1)
        ["up", "c.json", "--timeout", "nan"],
        ["up", "c.json", "--timeout", "soon"],
        ["up", "c.json", "--no-such-option"],
        ["up", "c.json", "-vx"],
        ["up", "c.json", "--watch-seconds", ""],
    ],
)
def test_lines_typer_should_read_go_through_typer(argv: list[str]) -> None:
    assert cli._plain_up_kwargs(argv) is None


@pytest.mark.parametrize(
    "args",
    [
        ["c.json"],
        ["c.json", "--runtime-dir", "/tmp/rt", "--timeout", "270"],
        ["--build", "-v", "c.json", "--force-recreate", "--cpux", "net"],
        ["c.json", "--watch", "--watch-seconds", "2.5", "--ephemeral-server", "--timeline", "t.svg", "--dry-run"],
        ["c.json", "--cpux", "--build"],  # as click reads it: --build is cpux's value
        ["c.json", "--timeout", "1e3"],
        ["c.json", "--timeout=3"],
        ["--", "c.json"],
        ["c.json", "--env-file", "a.env", "--env-file", "b.env"],
    ],
)
def test_a_plain_line_gives_up_what_typer_would(args: list[str]) -> None:
    import inspect

    import typer.main

    fast = cli._plain_up_kwargs(["up", *args])
    assert fast is not None, args
    command = typer.main.get_command(cli.app).commands["up"]
    multiple = {p.name for p in command.params if getattr(p, "multiple", False)}  # absent: click reads ()
    defaults = {
        n: () if n in multiple else p.default for n, p in inspect.signature(cli.up).parameters.items() if n != "config"
    }
    typer_reads = command.make_context("up", list(args)).params
    assert {**defaults, **fast} == typer_reads


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
    env.update({k: os.environ[k] for k in ("SYSTEMROOT",) if k in os.environ})  # Python on Windows needs it
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.json")], capture_output=True, text=True, env=env
    )
    assert "exit 2 False" in done.stderr, done.stderr
    assert "missing.json" in done.stderr


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        (typer.BadParameter("no such cpux 'x'", param_hint="'--cpux'"), 2, "Invalid value for '--cpux'"),
        (typer.Abort(), 1, "Aborted!"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_typer_errors_raised_inside_up_end_as_under_typer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: Exception, code: int, said: str
) -> None:
    def fake_up(config: Path, **kwargs: Any) -> None:
        raise raised

    monkeypatch.setattr(cli, "up", fake_up)
    with pytest.raises(SystemExit) as exited:
        cli._run_app(["up", "c.json"])
    assert exited.value.code == code
    assert said in capsys.readouterr().err


def test_every_option_of_up_is_read_plainly() -> None:
    """Every option of `up` has a type the plain reading converts itself (else each line using it would pay for
    typer's adapters)."""
    import typer.main

    from pnr.cli.fast import _plain_value

    command = typer.main.get_command(cli.app).commands["up"]
    for param in command.params:
        raw = True if param.type_descriptor.annotation is bool else (["1"] if param.multiple else "1")
        assert _plain_value(param, raw) is not None, param.name


@pytest.mark.parametrize(("code", "status", "said"), [(None, 0, ""), (3, 3, ""), ("no such thing", 1, "no such thing")])
def test_the_fast_exit_runs_the_exit_handlers_first(code: int | str | None, status: int, said: str) -> None:
    """After a flow ran in the process, `pnr` exits without interpreter teardown, but Prefect's exit handlers (which
    flush its events and logs) and pending output still come first."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "from pnr.cli.app import _exit_now\n"
        "print('pending', end='')\n"
        f"_exit_now({code!r})\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == status
    assert done.stdout == "pendinghandler ran\n"
    assert said in done.stderr


def test_up_built_alone_is_the_command_the_whole_app_makes() -> None:
    import typer.main

    alone, whole = cli._up_command(), typer.main.get_command(cli.app).commands["up"]  # type: ignore[attr-defined]
    assert alone is not whole  # built alone, not taken from the whole app's

    def described(command: Any) -> list[tuple[object, ...]]:
        return [(p.name, p.opts, p.multiple, p.default, repr(getattr(p, "type", None))) for p in command.params]

    assert described(alone) == described(whole) and len(alone.params) > 5
    assert alone.callback is not None and alone.name == whole.name == "up"
