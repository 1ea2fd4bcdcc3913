"""Compose's env-file format (a domain's `env_files`, compose's `env_file`, `label_file`, the project's `.env`):
`KEY=VALUE` lines, `export ` prefixes, `#` comments, single quotes (literal), double quotes (escapes, may span
lines), bare `KEY` (taken from the environment)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^\s*(?:export\s+)?([^\s=#]+)\s*(=?)")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "$": "$$",
}  # "$$": stays literal in templates


@dataclass(frozen=True)
class EnvLine:
    """One assignment of an env file."""

    key: str
    value: str | None  # None: bare KEY, taken from the environment
    literal: bool  # single-quoted: no variable substitution
    line: int


class EnvFileError(ValueError):
    """A line that is not `KEY=VALUE`, or a quote never closed."""


def parse_env_file(text: str) -> list[EnvLine]:
    """The assignments of an env file, in order (EnvFileError names the line)."""
    out: list[EnvLine] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        start = i + 1
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _KEY.match(raw)
        if not m:
            raise EnvFileError(f"line {start}: expected KEY=VALUE")
        key = m.group(1)
        if not m.group(2):
            if raw[m.end() :].strip() and not raw[m.end() :].strip().startswith("#"):
                raise EnvFileError(f"line {start}: expected KEY=VALUE")
            out.append(EnvLine(key, None, False, start))
            continue
        rest = raw[m.end() :].lstrip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            while _closing_quote(body, quote) < 0:
                if i >= len(lines):
                    raise EnvFileError(f"line {start}: the {quote} quote is never closed")
                body += "\n" + lines[i]
                i += 1
            end = _closing_quote(body, quote)
            value = body[:end]
            if quote == '"':
                value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), "\\" + e.group(1)), value)
            out.append(EnvLine(key, value, quote == "'", start))
        else:
            value = re.split(r"\s+#", rest, maxsplit=1)[0].rstrip()
            out.append(EnvLine(key, value, False, start))
    return out


def _closing_quote(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1
