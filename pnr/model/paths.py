"""JSON paths of config problems, as a user finds them in the file: `cpuxs.x.design_chunks[0].health_check`."""

from __future__ import annotations

from pnr.exceptions import path_join
from pnr.model.checks import BUILTIN_CHECKS

_SCALAR_TAGS = ("str", "int", "float", "bool")


def _union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """True when loc[i] is a tag pydantic inserts for a union member, not a key of the document."""
    part = loc[i]
    if not isinstance(part, str) or i == 0:
        return False
    before = loc[i - 1]
    tag = i < len(loc) - 1 or part in BUILTIN_CHECKS or part == "plugin"  # last: a whole-check error
    if before == "health_check" and tag:  # discriminated union: the probe type ('tcp')
        return True
    if isinstance(before, int) and i > 1 and loc[i - 2] == "checks" and tag:  # a child of all/any
        return True
    if part.startswith(("function-", "list[", "dict[")):  # never a valid key where a union can stand
        return True
    two_back = str(loc[i - 2]) if i > 1 else ""
    last = i == len(loc) - 1
    return (
        last
        and part in _SCALAR_TAGS
        and (before in ("command", "expected_code") or two_back == "ports" or two_back.startswith("dict["))
    )


def json_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a JSON path: cpuxs.x.design_chunks[0].health_check.port_key.

    Keys that are not plain names are quoted (`cpuxs["a b"]`, ASCII-escaped) so a path is one printable line."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out = path_join(out, part)
        elif part == "[key]" or _union_tag(loc, i):
            continue
        else:
            out = path_join(out, part)
    return out
