"""Per-key value rules: compose's booleans, numbers and durations, container env and labels in pnr's form."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from pnr.compose import _template as tpl
from pnr.compose._report import Context
from pnr.compose._spec import EnvFileSpec, ListOrDict, Scalar, ServiceSpec
from pnr.compose._yaml import key_path
from pnr.model.envfile import EnvFileError, EnvLine, parse_env_file
from pnr.model.fields import MAX_SECONDS

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def is_true(text: str) -> bool:
    """A compose boolean written as a string (`"true"`, `"1"`, `"T"`)."""
    return text in _TRUE


def as_bool(ctx: Context, value: object, path: str) -> bool:
    """A compose boolean (`true`, `"1"`, `"False"`, ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUE | _FALSE:
        return value in _TRUE
    ctx.fail(path, f"{value!r} is not a boolean (true or false)")
    return False


def as_int(ctx: Context, value: str | float, path: str) -> int | None:
    """A whole number, not negative."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        ctx.fail(path, f"{value!r} is not a whole number")
        return None
    if number < 0:
        ctx.fail(path, f"{value!r} must not be negative")
        return None
    return number


def as_seconds(ctx: Context, value: object, path: str) -> float | None:
    """A compose duration ("1m30s", "500ms", "2.5s") in seconds, within pnr's bound; None when absent or invalid."""
    if value is None:
        return None
    seconds = _parse_duration(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    if seconds is None or isinstance(value, bool):
        ctx.fail(path, f"{value!r} is not a duration like '30s', '1m30s' or '500ms'")
        return None
    if seconds > MAX_SECONDS:
        ctx.fail(path, f"{value!r} is longer than a day (pnr's limit: {MAX_SECONDS} seconds)")
        return None
    return round(seconds, 6)


def _parse_duration(text: str) -> float | None:
    if text == "0":
        return 0.0
    seconds, pos = 0.0, 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            return None
        seconds += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return seconds if text else None


# -- env ---------------------------------------------------------------------------------------------------
def container_env(ctx: Context, base: str, svc: ServiceSpec) -> dict[str, str]:
    """`env_file` and `environment` as `container.env`: `${VAR}` kept for pnr to expand when a run starts."""
    env: dict[str, str] = {}
    files = svc.get("env_file")
    for path, item in _file_items(base, "env_file", files):
        entries = read_env_file(ctx, path, item, "env file")
        if entries is None:
            continue
        for line in entries:
            env[line.key] = _env_line(ctx, f"{path} (line {line.line})", line)
        ctx.note(
            path,
            f"read when importing: its {len(entries)} variable(s) are copied into container.env "
            "(re-import when the file changes; write ${VAR} in it to keep secrets out of the domain)",
        )
    environment = svc.get("environment")
    if environment:
        env.update(env_values(ctx, key_path(base, "environment"), environment))
    return env


def _file_items(
    base: str, key: str, files: str | Sequence[str | EnvFileSpec] | None
) -> list[tuple[str, str | EnvFileSpec]]:
    if isinstance(files, str):
        return [(key_path(base, key), files)]
    return [(key_path(key_path(base, key), i), item) for i, item in enumerate(files or [])]


def _env_line(ctx: Context, where: str, line: EnvLine) -> str:
    if line.value is None:
        return inherited(ctx, where, line.key)
    if line.literal:
        if "${" in line.value:
            ctx.note(
                where, f"{line.key}: single-quoted (literal) in the env file, but pnr expands ${{...}} in env values"
            )
        return line.value
    return env_value(ctx, where, line.value)


def read_env_file(ctx: Context, path: str, item: str | EnvFileSpec, what: str) -> list[EnvLine] | None:
    """The lines of an `env_file` / `label_file` entry (relative to the project folder); None (reported) when
    it cannot be read. `what` names the file in messages ("env file", "label file")."""
    spec: EnvFileSpec = {"path": item} if isinstance(item, str) else item
    required = as_bool(ctx, spec.get("required", True), key_path(path, "required"))
    name = str(spec["path"])
    if spec.get("format") not in (None, "raw"):
        ctx.fail(key_path(path, "format"), f"{what} format {spec['format']!r} is not supported by pnr import")
        return None
    try:
        text = (ctx.folder / os.path.expanduser(name)).read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            ctx.fail(path, f"{what} {name!r} not found (relative to the compose file)")
        else:
            ctx.note(path, f"{what} {name!r} not found and not required: skipped, as compose does")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        ctx.fail(path, f"{what} {name!r} cannot be read: {exc}")
        return None
    try:
        entries = parse_env_file(text)
    except EnvFileError as exc:
        ctx.fail(path, f"{what} {name!r}: {exc}")
        return None
    if spec.get("format") == "raw":
        entries = [EnvLine(e.key, e.value, True, e.line) for e in entries]
    return entries


def env_values(ctx: Context, path: str, values: ListOrDict) -> dict[str, str]:
    """A list_or_dict of variables in pnr's form: values as strings, `${VAR}` kept for pnr to expand."""
    out: dict[str, str] = {}
    items: list[tuple[str, Scalar]]
    if isinstance(values, dict):
        items = list(values.items())
    else:
        items = [(s.split("=", 1)[0], s.split("=", 1)[1] if "=" in s else None) for s in values]
    for key, value in items:
        where = key_path(path, key)
        if value is None:
            out[key] = inherited(ctx, where, key)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            out[key] = str(value)
        else:
            out[key] = env_value(ctx, where, str(value))
    return out


def env_value(ctx: Context, path: str, value: str) -> str:
    """One env value in pnr's syntax; a variable set nowhere (neither the shell nor .env) is reported."""
    try:
        parts = tpl.parse(value)
        text, changes = tpl.to_pnr(parts, ctx.env)
    except tpl.TemplateError as exc:
        ctx.fail(path, str(exc))
        return value
    for change in changes:
        ctx.note(path, change)
    unset = sorted({p.name for p in parts if isinstance(p, tpl.Var) and p.op in ("", ":?", "?")} - ctx.env.keys())
    if unset:
        ctx.note(
            path,
            f"{', '.join(unset)} unset in the shell and in .env: pnr up refuses to start until it is exported or "
            "set in an env file of the domain's env_files",
        )
    return text


def inherited(ctx: Context, path: str, key: str) -> str:
    """A variable without a value (`environment: [VAR]`): compose takes it from the shell or .env."""
    if key in ctx.env:
        origin = ".env (the domain's env_files)" if key in ctx.dotenv_keys else "the environment"
        ctx.note(path, f"{key} without a value: ${{{key}}}, taken from {origin} when the run starts")
        return "${" + key + "}"
    ctx.note(
        path,
        f"{key} without a value, unset in the shell and in .env: ${{{key}:-}}, empty unless set when the run "
        "starts (compose would leave it unset)",
    )
    return "${" + key + ":-}"


# -- labels -------------------------------------------------------------------------------------------------
def container_labels(ctx: Context, base: str, svc: ServiceSpec) -> dict[str, str]:
    """`label_file` and `labels`; pnr's own `io.pnr.` labels dropped."""
    labels: dict[str, str] = {}
    for path, item in _file_items(base, "label_file", svc.get("label_file")):
        for line in read_env_file(ctx, path, item, "label file") or []:
            labels[line.key] = line.value or ""
    values = svc.get("labels") or {}
    items: Iterable[tuple[str, Scalar]] = values.items() if isinstance(values, dict) else [_label(s) for s in values]
    for key, value in items:
        if isinstance(value, bool):
            labels[key] = "true" if value else "false"
        else:
            labels[key] = "" if value is None else str(value)
    for key in [k for k in labels if k.startswith("io.pnr.")]:
        del labels[key]
        ctx.note(key_path(key_path(base, "labels"), key), "dropped: labels starting with io.pnr. are pnr's own")
    return labels


def _label(item: str) -> tuple[str, str]:
    """`KEY=VALUE` as (KEY, VALUE); `KEY` as (KEY, "")."""
    key, _, value = item.partition("=")
    return key, value
