"""The two consoles pnr's commands print to (stdout, stderr). They take rich's console markup (`[bold]`, `[green]…[/]`,
text passed through `escape`) and tables of rows.

Where rich would print no styles — the output goes to a pipe or a file, as when a script, a CI job or a harness runs
`pnr up` — a line of text in the markup pnr's own lines use, and a table that fits the width, are written here,
exactly as rich writes them, without importing rich: rich costs a `pnr up` process ~50 ms of CPU, more than the
rest of its rendering. Anything else (a terminal, whose styles rich works out; a renderable; markup or text this
module does not read) goes to a rich Console made on first use with the same settings."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import rich.console

# rich's own patterns (rich.markup): a tag, preceded by the backslashes that may escape it
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
_STYLES = {"bold", "italic", "dim", "red", "green", "yellow", "blue", "cyan", "magenta", "white"}
_CONTROL = {7: None, 8: None, 11: None, 12: None, 13: None}  # what rich removes from text it prints
_FDS = (1, 2) if sys.platform == "win32" else (0, 1, 2)  # where rich looks for a terminal's size


def escape(text: str) -> str:
    """`text` shown as it is (no markup): rich's own escaping (rich.markup.escape)."""
    text = _ESCAPE.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def plain(markup: str) -> str | None:
    """The text rich prints for `markup` without styles, or None where this module leaves it to rich (a tag it
    does not know, a closing tag that closes nothing, a tab)."""
    if "\t" in markup:
        return None
    pieces: list[str] = []
    opened: list[str] = []
    position = 0
    for match in _TAG.finditer(markup):
        whole, escapes, tag = match.groups()
        start, end = match.span()
        pieces.append(markup[position:start])
        position = end
        if escapes:
            backslashes, escaped = divmod(len(escapes), 2)
            pieces.append("\\" * backslashes)
            if escaped:
                pieces.append(whole[len(escapes) :])
                continue
        if tag.startswith("/"):
            name = tag[1:].strip()
            if not opened or (name and name not in opened):
                return None  # rich raises MarkupError: let it
            opened.remove(name) if name else opened.pop()
        elif set(tag.split()) <= _STYLES:
            opened.append(tag)
        else:
            return None
    pieces.append(markup[position:])
    return "".join(piece.replace("\\[", "[") for piece in pieces).translate(_CONTROL)  # rich: per piece


class Console:
    """stdout's or stderr's console (the stream as it is when printing, as rich has it)."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._rich: rich.console.Console | None = None
        self._quiet = False  # its reader is gone

    @property
    def file(self) -> TextIO:
        return sys.stderr if self.stderr else sys.stdout

    @property
    def rich(self) -> rich.console.Console:
        """The rich Console for what this module does not print itself."""
        if self._rich is None:
            from rich.console import Console as RichConsole

            self._rich = RichConsole(stderr=self.stderr, highlight=False, soft_wrap=True, emoji=False)
        return self._rich

    @property
    def is_terminal(self) -> bool:
        """Whether rich would write styles (rich.console.Console.is_terminal, for the cases a CLI meets)."""
        if self._rich is not None:
            return self._rich.is_terminal
        return _terminal(self.file)

    @property
    def plain(self) -> bool:
        """Output without styles, in UTF-8: what this module writes itself."""
        encoding = getattr(self.file, "encoding", None) or ""
        return not self.is_terminal and encoding.lower().replace("-", "") == "utf8"

    def print(self, *objects: Any, **options: Any) -> None:
        """rich's print: `objects` joined by spaces, then a newline."""
        texts = [plain(o) if isinstance(o, str) else None for o in objects]
        if options or not self.plain or any(t is None for t in texts):
            self.rich.print(*objects, **options)
            return
        self._write(" ".join(t for t in texts if t is not None) + "\n")

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table as rich draws it (heavy head, the title on the left above it); `rows`' cells in markup."""
        drawn = _draw(title, columns, rows, _width()) if self.plain else None
        if drawn is not None:
            self._write(drawn)
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        self.rich.print(table)

    def _write(self, text: str) -> None:
        """Write and flush; a reader gone (`pnr up | head`) ends pnr quietly with status 1, as rich does."""
        if self._quiet:
            return
        try:
            self.file.write(text)
            self.file.flush()
        except BrokenPipeError:
            self._quiet = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None


def _terminal(file: TextIO) -> bool:
    """rich's test (rich.console.Console.is_terminal): TTY_COMPATIBLE, then FORCE_COLOR, then isatty."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def _width() -> int:
    """The width rich gives a console that is not a terminal: COLUMNS, else the size of a standard stream's
    terminal (stdin, stdout, stderr, the first that has one; not stdin on Windows), else 80."""
    width = 0
    for fd in _FDS:
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else width or 80


def _draw(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> str | None:
    """The table rich draws without styles, or None where rich would fold it (wider than `width`), or where
    this module leaves it to rich (text that is not plain ASCII on one line, markup it does not read)."""
    cells = [list(columns)]
    for row in rows:
        texts = [plain(cell) for cell in row]
        if any(t is None for t in texts) or len(texts) != len(columns):
            return None
        cells.append([t for t in texts if t is not None])
    if any(not text.isascii() or not text.isprintable() for row in cells for text in row):
        return None
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    total = sum(widths) + 3 * len(widths) + 1
    if total > width or len(title) > total or not title.isascii() or not title.isprintable():
        return None

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right + "\n"

    def row_line(edge: str, row: Sequence[str]) -> str:
        return edge + edge.join(f" {text:<{w}} " for text, w in zip(row, widths, strict=True)) + edge + "\n"

    body = "".join(row_line("│", row) for row in cells[1:])
    head = line("┏", "━", "┳", "┓") + row_line("┃", cells[0]) + line("┡", "━", "╇", "┩")
    return (title + "\n" if title else "") + head + body + line("└", "─", "┴", "┘")
