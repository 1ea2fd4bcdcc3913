"""A plain `pnr up` line is read without typer (pnr.cli.fast) and runs `pnr.cli.up.up` without typer or rich
imported; every other line goes through typer, and what the plain reading gives is what typer would."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

import pnr.cli
import pnr.cli.up
from pnr.cli.app import app
from pnr.cli.fast import UP_OPTIONS, plain_up_kwargs

CONFIG = Path(__file__).resolve().parents[2] / "config" / "quickstart.json"


def _typer_up() -> Any:
    return typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        [""],
        ["a.json", "b.json"],
        ["--build"],  # no config
        ["c.json", "--build", "--build"],
        ["c.json", "--cpux", "a", "--cpux", "b"],
        ["c.json", "--timeout"],  # no value
        ["c.json", "--timeout", "0"],  # below its min (0.1)
        ["c.json", "--timeout", "nan"],
        ["c.json", "--timeout", "soon"],
        ["c.json", "--timeout="],
        ["c.json", "--build=yes"],
        ["c.json", "--no-such-option"],
        ["c.json", "-vx"],
        ["c.json", "-h"],
        ["c.json", "--watch-seconds", ""],
    ],
)
def test_lines_typer_should_read_go_through_typer(args: list[str]) -> None:
    assert plain_up_kwargs(args) is None


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
        ["c.json", "--runtime-dir=rt"],
        ["--", "c.json"],
        ["-"],
        ["c.json", "--env-file", "a.env", "--env-file", "b.env"],
    ],
)
def test_a_plain_line_gives_up_what_typer_would(args: list[str]) -> None:
    fast = plain_up_kwargs(args)
    assert fast is not None, args
    command = _typer_up()
    multiple = {p.name for p in command.params if getattr(p, "multiple", False)}  # absent: click reads ()
    defaults = {n: () if n in multiple else p.default for n, p in inspect.signature(pnr.cli.up.up).parameters.items()}
    typer_reads = command.make_context("up", list(args)).params
    assert {**defaults, **fast} == typer_reads


def test_the_plain_reading_knows_every_option_of_up_as_typer_declares_it() -> None:
    """UP_OPTIONS and the options pnr.cli.app declares stay one list: names, flags, types, repetition, minimum."""
    declared = {}
    for param in _typer_up().params:
        if not isinstance(param, typer.core.TyperOption):
            continue
        annotation = param.type_descriptor.annotation
        kind = {list[Path]: Path}.get(annotation, annotation)
        for opt in param.opts:
            declared[opt] = (param.name, kind, param.multiple, param.min)
    assert {k: (o.param, o.kind, o.multiple, o.min) for k, o in UP_OPTIONS.items()} == declared


def test_the_command_typer_runs_and_the_plain_one_take_the_same_parameters() -> None:
    """pnr.cli.app's `up` (typer's declaration) and pnr.cli.up.up (what both run): same names, order, defaults."""
    import pnr.cli.app

    declared = inspect.signature(pnr.cli.app.up).parameters
    implemented = inspect.signature(pnr.cli.up.up).parameters
    assert [(n, p.default) for n, p in declared.items()] == [(n, p.default) for n, p in implemented.items()]


def test_the_typer_command_calls_up_with_what_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import pnr.cli.app

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(pnr.cli.app, "bring_up", lambda **kwargs: calls.append(kwargs))
    with pytest.raises(SystemExit) as exited:
        app(args=["up", "c.json", "--cpux", "x", "--timeout", "5", "--build", "-v"], standalone_mode=True)
    assert exited.value.code == 0
    got = calls[0]
    assert (got["config"], got["cpux"], got["timeout"], got["build"], got["verbose"]) == (
        Path("c.json"),
        "x",
        5.0,
        True,
        True,
    )
    assert list(got) == list(inspect.signature(pnr.cli.up.up).parameters)  # every parameter, by name


def test_up_config_calls_up_with_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_up(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        raise typer.Exit(3)

    monkeypatch.setattr(pnr.cli.up, "up", fake_up)
    with pytest.raises(SystemExit) as exited:  # typer.Exit becomes the exit status, as under typer
        pnr.cli.run_line(["up", "config/dev_stack.json"])
    assert exited.value.code == 3
    assert calls == [((), {"config": Path("config/dev_stack.json")})]


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        (typer.BadParameter("no such cpux 'x'", param_hint="'--cpux'"), 2, "Invalid value for '--cpux'"),
        (typer.Abort(), 1, "Aborted!"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_typer_errors_raised_inside_up_end_as_under_typer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: BaseException, code: int, said: str
) -> None:
    def fake_up(**kwargs: Any) -> None:
        raise raised

    monkeypatch.setattr(pnr.cli.up, "up", fake_up)
    with pytest.raises(SystemExit) as exited:
        pnr.cli.run_line(["up", "c.json"])
    assert exited.value.code == code
    assert said in capsys.readouterr().err


def _run_piped(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PNR_STATE_DIR": str(tmp_path / "state"), "PNR_RUNNER": "false"}
    for key in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def test_a_bring_up_with_its_output_piped_imports_neither_typer_nor_rich(tmp_path: Path) -> None:
    """What the plain reading and pnr.cli.console are for: the whole `pnr up` (header, progress, chunk table,
    last lines; the run itself faked) without either library; with typer's Exit on a failed run, typer only."""
    code = (
        "import sys\n"
        "import pnr.backend.run as run\n"
        "from pnr.backend.protocol import Accepted, UpOutcome\n"
        "from pnr.exceptions import RunError\n"
        "from pnr.records import ChunkStatus, DomainStatus, ProgressEvent\n"
        "def fake(request, on_event, **kw):\n"
        "    on_event(Accepted('d', 1, ['main'], False, 'rt'))\n"
        "    on_event(ProgressEvent('d', 'main', 'a', 'ready', 'a [ready]', 0.0))\n"
        "    chunk = ChunkStatus('completed', 'default', 'd-a', 'id1', 'main', 'ready', 'd-a [ready]')\n"
        "    status = DomainStatus('d', {}, {'a': chunk}, 'rt')\n"
        "    ok = UpOutcome.done({'cpuxs': {'main': {'a': {}}}})\n"
        "    return (ok if sys.argv[2] == 'ok' else UpOutcome.failed(RunError('chunk a failed'))).with_report(\n"
        "        status, None)\n"
        "run.run_up = fake\n"
        "from pnr.cli import run_line\n"
        "code = 0\n"
        "try:\n    run_line(['up', sys.argv[1]])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('exit', code, 'typer' in sys.modules, 'rich' in sys.modules, file=sys.stderr)\n"
    )
    done = _run_piped(tmp_path, code, str(CONFIG), "ok")
    assert "exit 0 False False" in done.stderr, done.stderr
    assert "pnr up d (1 chunk, cpux main); runtime rt" in done.stdout
    assert "a                      ready     a [ready]" in done.stdout  # escaped text printed as it is
    assert "│ a     │ completed │ d-a       │ d-a [ready] │" in done.stdout  # the chunk table
    assert "up: 1 chunk completed" in done.stdout
    failed = _run_piped(tmp_path, code, str(CONFIG), "failed")
    assert "exit 1 True False" in failed.stderr, failed.stderr
    assert "failed: chunk a failed" in failed.stderr


def test_a_missing_config_fails_the_same_way_without_typer(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pnr.cli import run_line\n"
        "try:\n    run_line(['up', sys.argv[1]])\n"
        "except SystemExit as e:\n    print('exit', e.code, 'typer._adapters' in sys.modules, file=sys.stderr)\n"
    )
    done = _run_piped(tmp_path, code, str(tmp_path / "missing.json"))
    assert "exit 2 False" in done.stderr, done.stderr
    assert "missing.json" in done.stderr


@pytest.mark.parametrize(("code", "status", "said"), [(None, 0, ""), (3, 3, ""), ("no such thing", 1, "no such thing")])
def test_the_fast_exit_runs_the_exit_handlers_first(code: int | str | None, status: int, said: str) -> None:
    """After a flow ran in the process, `pnr` exits without interpreter teardown, but Prefect's exit handlers (which
    flush its events and logs) and pending output still come first."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "from pnr.cli import exit_now\n"
        "print('pending', end='')\n"
        f"exit_now({code!r})\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == status
    assert done.stdout == "pendinghandler ran\n"
    assert said in done.stderr
