"""Compose's variable syntax, parsed once and rendered two ways.

Compose substitutes `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
`${VAR:+alt}`, `${VAR+alt}` (defaults may nest) when it loads a file; `$$` is a literal `$`. pnr expands only
`${VAR}` and `${VAR:-default}`, only in container env, and only when a run starts — so that secrets never
land in a generated file. `resolve` does what compose does (for keys pnr does not expand); `to_pnr` keeps
what pnr can expand at start and says what it changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_BRACED = re.compile(r"([_A-Za-z][_A-Za-z0-9]*)(?:(:?[-+?])(.*))?", re.DOTALL)


class TemplateError(ValueError):
    """An invalid `${...}`, or a `${VAR:?message}` whose variable is missing."""


@dataclass(frozen=True)
class Var:
    name: str
    op: str = ""  # "", ":-", "-", ":?", "?", ":+", "+"
    arg: tuple[Part, ...] = ()

    def source(self) -> str:
        return (
            "${" + self.name + self.op + render_source(self.arg) + "}"
            if self.op or self.arg
            else "${" + self.name + "}"
        )


Part = str | Var


def parse(text: str) -> tuple[Part, ...]:
    """Literal text and variable references, in order. Raises TemplateError for a malformed `${...}`."""
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            literal.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            literal.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise TemplateError(f"invalid interpolation in {text!r}: '${{' without a closing '}}'")
            m = _BRACED.fullmatch(text, i + 2, end)
            if not m:
                raise TemplateError(
                    f"invalid interpolation {text[i : end + 1]!r}: write ${{NAME}} or ${{NAME:-default}}"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Var(m.group(1), m.group(2) or "", parse(m.group(3)) if m.group(2) else ()))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if not m:  # "$1", "$ ", "$(": compose leaves them as they are
                literal.append(ch)
                i += 1
                continue
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Var(m.group(0)))
            i = m.end()
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def has_vars(parts: tuple[Part, ...]) -> bool:
    return any(isinstance(p, Var) for p in parts)


def render_source(parts: tuple[Part, ...]) -> str:
    """The parts written back in compose syntax (`$` in literal text doubled)."""
    return "".join(p.replace("$", "$$") if isinstance(p, str) else p.source() for p in parts)


def resolve(parts: tuple[Part, ...], env: Mapping[str, str], missing: list[str]) -> str:
    """Compose's substitution. Unset variables without a default become "" and are listed in `missing`."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = env.get(part.name)
        is_set, non_empty = value is not None, bool(value)
        op = part.op
        if op in ("", "-", ":-"):
            if (op == ":-" and not non_empty) or (op == "-" and not is_set):
                out.append(resolve(part.arg, env, missing))
            elif value is None:
                missing.append(part.name)
            else:
                out.append(value)
        elif op in (":?", "?"):
            if (op == ":?" and not non_empty) or (op == "?" and not is_set):
                message = resolve(part.arg, env, []) or "is required"
                raise TemplateError(f"variable {part.name} is not set: {message}")
            out.append(value or "")
        else:  # ":+" / "+": the alternative when set
            if (op == ":+" and non_empty) or (op == "+" and is_set):
                out.append(resolve(part.arg, env, missing))
    return "".join(out)


def to_pnr(parts: tuple[Part, ...], env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The value in pnr's env syntax (`${VAR}`, `${VAR:-default}`, expanded by `pnr up`), and a sentence for
    every place where pnr's meaning differs from compose's."""
    out: list[str] = []
    changes: list[str] = []
    for part in parts:
        if isinstance(part, str):
            if "${" in part:
                changes.append(
                    f"the literal text {part!r} (written with '$$') would be expanded by pnr, which has "
                    "no escape for '$'"
                )
            out.append(part)
            continue
        simple_arg = not has_vars(part.arg) and "}" not in render_source(part.arg)
        default = "".join(p for p in part.arg if isinstance(p, str))
        if part.op == "":
            out.append("${" + part.name + "}")
        elif part.op == ":-" and simple_arg:
            out.append("${" + part.name + ":-" + default + "}")
        elif part.op == "-" and simple_arg:
            out.append("${" + part.name + ":-" + default + "}")
            changes.append(
                f"{part.source()} became ${{{part.name}:-{default}}}: pnr also uses the default when "
                f"{part.name} is set but empty"
            )
        elif part.op in (":?", "?"):
            out.append("${" + part.name + "}")
            changes.append(
                f"{part.source()} became ${{{part.name}}}: pnr refuses to start while {part.name} is "
                "unset (without compose's message)"
            )
        else:
            missing: list[str] = []
            value = resolve((part,), env, missing)
            out.append(value)
            changes.append(
                f"{part.source()} has no pnr equivalent: resolved when importing, to the value it has "
                "in this environment (re-import to change it)"
            )
    return "".join(out), changes
