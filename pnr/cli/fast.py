"""A plain command line read by the command's own click parser, without typer's value adapters.

Typer converts each value with a pydantic adapter it builds per parameter of the command it calls (importing
pydantic and scanning the installed packages' entry points: ~70 ms of a thin `pnr up` client's ~170 ms of CPU).
`plain_kwargs` reads the line with the parser typer's own parameter definitions build (options, flags, `--`,
`--opt=value` as click reads them) and converts only values whose annotation is plain (str, float, Path, a list of
them, a flag); anything else goes to typer, which converts it or says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

_PLAIN: dict[object, type] = {str: str, float: float, Path: Path, list[str]: str, list[Path]: Path}


def plain_kwargs(command: TyperCommand, args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments typer would call `command`'s function with for `args`, or None where typer should
    read the line itself (an error to word, --help, a repeated single option, a value it converts otherwise)."""
    context = command.context_class(command, info_name=command.name)
    try:
        values, extra, order = command.make_parser(context).parse_args(list(args))
    except typer.TyperException:  # click's usage errors: typer words them
        return None
    params = {param.name: param for param in command.params}
    if extra or any(param.name not in params for param in order):  # --help is no parameter of the function
        return None
    kwargs: dict[str, Any] = {}  # the function's own parameters, each of its own type
    for name, raw in values.items():
        param = params[name]
        if order.count(param) > 1 and not param.multiple:
            return None
        value = _plain_value(param, raw)
        if value is None:
            return None
        kwargs[str(name)] = value
    return kwargs if all(p.name in kwargs for p in command.params if p.required) else None


def _plain_value(param: object, raw: object) -> object:
    """`raw` (a string, a flag's True, a list of strings) as the parameter's annotation has it; None when typer
    should convert it (another type, an empty string, a number out of range or not a number). `param`: one of the
    command's parameters (typer's own kinds have the annotation)."""
    if not isinstance(param, TyperArgument | TyperOption):
        return None
    annotation = param.type_descriptor.annotation
    if annotation is bool:
        return raw if raw is True else None
    convert = _PLAIN.get(annotation)
    if convert is None:
        return None
    items = [_convert(convert, item, param) for item in (raw if param.multiple and isinstance(raw, list) else [raw])]
    if any(item is None for item in items):
        return None
    return items if param.multiple else items[0]


def _convert(convert: type, text: object, param: TyperArgument | TyperOption) -> object:
    if not isinstance(text, str) or not text:
        return None
    if convert is not float:
        return convert(text)
    try:
        number = float(text)
    except ValueError:
        return None
    low, high = param.min, param.max
    if (low is not None and not number >= low) or (high is not None and not number <= high):
        return None  # NaN too: typer words the error
    return number
