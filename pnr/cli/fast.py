"""A plain `pnr up` line, read without typer.

Every `pnr up` process pays for what it imports before its run begins, and six of them at once pay it on the same
cores: typer (with the parser and value adapters it builds per command) costs ~20 ms of CPU, rich ~50 ms, of the
~180 ms a thin client spends. `plain_up_kwargs` reads the options of `pnr up` as typer's parser (click's) reads
them — `--opt value`, `--opt=value`, flags, `--` — and converts the values itself (str, float with its minimum,
Path, a list of them). Any line it is not sure of (an unknown or repeated option, --help, a missing or bad value,
no config or two) gets None, and typer reads it: typer words the errors. `UP_OPTIONS` is kept equal to the
options pnr.cli.app declares for typer by tests/unit/test_cli_fast_path.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Option:
    """One option of `pnr up`: the parameter of `pnr.cli.up.up` it sets, its type (bool: a flag)."""

    param: str
    kind: type
    multiple: bool = False
    min: float | None = None


UP_OPTIONS: dict[str, Option] = {
    "--cpux": Option("cpux", str),
    "--runtime-dir": Option("runtime_dir", Path),
    "--env-file": Option("env_file", Path, multiple=True),
    "--timeout": Option("timeout", float, min=0.1),
    "--build": Option("build", bool),
    "--force-recreate": Option("force_recreate", bool),
    "--dry-run": Option("dry_run", bool),
    "--verbose": Option("verbose", bool),
    "-v": Option("verbose", bool),
    "--watch": Option("watch", bool),
    "--watch-seconds": Option("watch_seconds", float, min=0.1),
    "--ephemeral-server": Option("ephemeral_server", bool),
    "--timeline": Option("timeline", Path),
}


def plain_up_kwargs(args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of `pnr.cli.up.up` for the arguments after `pnr up` (those given: the others keep
    their defaults), or None where typer should read the line."""
    kwargs: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            positional += args[i:]
            break
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, equals, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        option = UP_OPTIONS.get(name)
        if option is None or (option.param in kwargs and not option.multiple):
            return None
        if option.kind is bool:
            if equals:
                return None
            kwargs[option.param] = True
            continue
        if not equals:
            if i == len(args):
                return None
            inline, i = args[i], i + 1  # click takes the next word as the value, whatever it looks like
        value = _convert(option, inline)
        if value is None:
            return None
        if option.multiple:
            kwargs.setdefault(option.param, []).append(value)
        else:
            kwargs[option.param] = value
    if len(positional) != 1 or not positional[0]:
        return None
    kwargs["config"] = Path(positional[0])
    return kwargs


def _convert(option: Option, text: str) -> object:
    """`text` as the option's type; None when typer should convert it (empty, not a number, out of range)."""
    if not text:
        return None
    if option.kind is not float:
        return option.kind(text)
    try:
        number = float(text)
    except ValueError:
        return None
    if option.min is not None and not number >= option.min:
        return None  # NaN too: typer words the error
    return number
