"""pnr.cli.console writes what rich would write where rich would print no styles, and leaves everything else to
rich: checked against rich itself on generated markup and tables."""

from __future__ import annotations

import io
import random
import sys

import pytest
from rich.console import Console as RichConsole
from rich.markup import escape as rich_escape
from rich.table import Table

from pnr.cli import console
from pnr.cli.console import Console, escape, plain

PIECES = [*"ab [/]\\\r\x07é:", "[bold]", "[/]", "[green]", "[/green]", "[bold red]", "\\[", "[foo]", " :smile: ", "\n"]


def _rich_prints(markup: str, width: int = 80) -> str | None:
    out = io.StringIO()
    try:
        RichConsole(file=out, highlight=False, soft_wrap=True, emoji=False, width=width).print(markup)
    except Exception:  # rich refuses it (MarkupError): pnr.cli.console must leave it to rich
        return None
    return out.getvalue()


def _markups(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def test_escape_is_riches() -> None:
    for text in _markups(1, 3000):
        assert escape(text) == rich_escape(text), text


def test_text_it_prints_itself_is_what_rich_prints() -> None:
    compared = 0
    for markup in [*_markups(2, 3000), *(escape(m) for m in _markups(3, 1000))]:
        mine = plain(markup)
        if mine is None:
            continue
        compared += 1
        assert mine + "\n" == _rich_prints(markup), repr(markup)
    assert compared > 1500  # most of it is pnr's kind of markup


@pytest.mark.parametrize("markup", ["[foo]x", "a [/] b", "[bold]x[/green]", "tab\there"])
def test_what_it_does_not_read_is_left_to_rich(markup: str) -> None:
    assert plain(markup) is None


def test_tables_it_draws_itself_are_what_rich_draws() -> None:
    rng = random.Random(4)
    cells = ["s0", "[green]completed[/]", "[red]failed[/]", "", "-", "o30-s0 ready", "x" * 30, "[yellow]\\[x][/]"]
    titles = ["domain o30", "signals", "", "a title longer than some of the tables below"]
    drawn = 0
    for _ in range(800):
        columns = [rng.choice(["chunk", "status", "container", "detail", "tv"]) for _ in range(rng.randint(1, 5))]
        rows = [[rng.choice(cells) for _ in columns] for _ in range(rng.randint(0, 4))]
        title, width = rng.choice(titles), rng.choice([40, 80, 150])
        mine = console._draw(title, columns, rows, width)
        if mine is None:
            continue
        drawn += 1
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        out = io.StringIO()
        RichConsole(file=out, highlight=False, soft_wrap=True, emoji=False, width=width).print(table)
        assert mine == out.getvalue(), (title, columns, rows, width)
    assert drawn > 250


def test_a_table_wider_than_the_console_or_not_ascii_is_left_to_rich() -> None:
    assert console._draw("t", ["c"], [["x" * 100]], 80) is None
    assert console._draw("t", ["c"], [["é"]], 80) is None
    assert console._draw("t", ["c"], [["two\nlines"]], 80) is None


class _Stream(io.StringIO):
    def __init__(self, tty: bool, encoding: str = "utf-8") -> None:
        super().__init__()
        self.tty, self._encoding = tty, encoding

    def isatty(self) -> bool:
        return self.tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding


@pytest.mark.parametrize(
    ("tty", "env", "encoding", "writes_itself"),
    [
        (False, {}, "utf-8", True),
        (True, {}, "utf-8", False),  # a terminal: rich works out its styles
        (False, {"FORCE_COLOR": "1"}, "utf-8", False),
        (True, {"FORCE_COLOR": ""}, "utf-8", True),
        (True, {"TTY_COMPATIBLE": "0"}, "utf-8", True),
        (False, {"TTY_COMPATIBLE": "1"}, "utf-8", False),
        (False, {}, "cp1252", False),  # rich picks its own box characters there
    ],
)
def test_it_writes_itself_only_where_rich_would_write_no_styles(
    monkeypatch: pytest.MonkeyPatch, tty: bool, env: dict[str, str], encoding: str, writes_itself: bool
) -> None:
    for key in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stream = _Stream(tty, encoding)
    monkeypatch.setattr(sys, "stdout", stream)
    out = Console()
    assert out.plain is writes_itself
    assert out.is_terminal is (not writes_itself and encoding == "utf-8")
    out.print("[green]up:[/] 3 chunks")
    out.table("domain d", ["chunk"], [["[green]a[/]"]])
    styled = "\x1b[" in stream.getvalue()
    assert styled is out.is_terminal
    assert ("up: 3 chunks\n" in stream.getvalue()) is not styled


def test_a_reader_gone_ends_quietly_with_status_1_as_rich_does() -> None:
    """`pnr up | head -1`: no BrokenPipeError traceback."""
    import subprocess

    code = "from pnr.cli.common import out\nfor i in range(100000):\n    out.print(f'line {i} [green]x[/]')\n"
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    assert writer.stdout.readline() == b"line 0 x\n"
    writer.stdout.close()
    assert writer.wait(timeout=60) == 1
    assert writer.stderr.read() == b""
