"""The loader: a JSON file becomes a validated `Domain`, or one `ConfigError` that names the file and the
JSON path of every problem (never a traceback)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model.checks import BUILTIN_CHECKS, check_kinds
from pnr.model.container import ContainerSpec
from pnr.model.domain import Cpux, DesignChunk, Domain
from pnr.model.engines import EngineSpec, EngineTls
from pnr.model.fields import MappedSignal, PnR, StatusMapping
from pnr.model.partial import partial_domain
from pnr.model.paths import json_path
from pnr.records import JsonObject, JsonValue

MAX_CONFIG_BYTES = 5 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_ISSUES = 50  # reported per file; the rest are counted


def _merge_union_issues(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """A value that fits no member of a union gives one error per member: say it once, per path."""
    merged: dict[str, ConfigIssue] = {}
    for issue in issues:
        prev = merged.get(issue.path)
        if prev is None:
            merged[issue.path] = issue
        elif issue.message.startswith("Input should be a valid ") and prev.message.startswith(
            "Input should be a valid "
        ):
            merged[issue.path] = ConfigIssue(
                issue.path, f"{prev.message} or {issue.message.removeprefix('Input should be a valid ')}"
            )
        elif issue.message != prev.message:
            merged[issue.path + "\0" + issue.message] = issue
    return list(merged.values())


# field name -> model of its value (or of its map values), to suggest the key meant by a typo
_FIELD_MODELS: dict[str, type[BaseModel]] = {
    "cpuxs": Cpux,
    "container": ContainerSpec,
    "status_mapping": StatusMapping,
    "success": MappedSignal,
    "failure": MappedSignal,
    "gatekeeper": PnR,
    "flowout": PnR,
    "engines": EngineSpec,
    "tls": EngineTls,
}


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where the unknown key `loc[-1]` stands, to suggest a fix for a typo."""
    parent = loc[:-1]
    if not parent:
        return list(Domain.model_fields)
    last = parent[-1]
    before = parent[-2] if len(parent) > 1 else None
    model: type[BaseModel] | None
    if (
        isinstance(last, str)
        and last in BUILTIN_CHECKS
        and (before == "health_check" or (isinstance(before, int) and len(parent) > 2 and parent[-3] == "checks"))
    ):
        model = BUILTIN_CHECKS[last]
    elif isinstance(last, int) and before == "design_chunks":
        model = DesignChunk
    elif isinstance(before, str) and before in ("cpuxs", "gatekeeper", "flowout", "engines"):
        model = _FIELD_MODELS[before]
    else:
        model = _FIELD_MODELS.get(str(last))
    return list(model.model_fields) if model is not None else []


def _issue_from_error(err: ErrorDetails) -> ConfigIssue:
    loc = tuple(err["loc"])
    path = json_path(loc)
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        )
        return ConfigIssue(path, f"unknown key {key!r}{hint}")
    if kind == "missing" and len(loc) > 2 and loc[-1] == "tv" and loc[-3] == "gatekeeper":
        return ConfigIssue(
            path,
            'a gate must say which truth value it waits for: add "tv": "Y" to wait until the signal is Y '
            "(without tv the gate would wait for U, which an unwritten signal already is: it would open at once)",
        )
    if kind == "missing":
        return ConfigIssue(path, "required key is missing")
    if kind == "literal_error" and path.endswith("tv"):
        return ConfigIssue(path, f"tv must be 'Y', 'N' or 'U' (any case), not {err.get('input')!r}")
    if kind == "union_tag_invalid":
        kinds = ", ".join(repr(k) for k in check_kinds())
        return ConfigIssue(path, f"unknown health check type {err.get('input', {}).get('type')!r}: use one of {kinds}")
    if kind == "union_tag_not_found":
        return ConfigIssue(path, f"health_check needs a 'type': one of {', '.join(repr(k) for k in check_kinds())}")
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return ConfigIssue(path, msg)


def _depth(obj: JsonValue, limit: int) -> int:
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


# checks of a valid domain to run on the part of a file that validated: (domain, source, left_out, places)
RestChecks = Callable[[Domain, str, set[str], dict[str, list[int]]], list[ConfigIssue]]


def parse_domain(
    data: JsonValue,
    source: str = "<config>",
    dup_keys: dict[int, list[str]] | None = None,
    rest: RestChecks | None = None,
) -> Domain:
    """Validate already-parsed JSON; raise ConfigError naming `source` and each JSON path. `rest`: more checks
    (the plan's) run on the design chunks that did validate when others did not, so one run reports them all."""
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", f"the top level must be a JSON object, not {type(data).__name__}")])
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ConfigError(source, [ConfigIssue("", f"nested deeper than {MAX_JSON_DEPTH} levels")])
    issues = _scan_text(data, dup_keys or {})
    if issues:
        raise ConfigError(source, _capped(issues))
    try:
        return Domain.model_validate(data)
    except ValidationError as exc:
        issues = schema_issues(exc)
    more = _check_rest(data, source, rest) if rest is not None else []
    raise ConfigError(source, _capped([*issues, *more]))


def schema_issues(exc: ValidationError) -> list[ConfigIssue]:
    """pydantic's errors as issues: one per JSON path, each saying what was given and what would fit."""
    given: dict[str, object] = {}
    issues = []
    for err in exc.errors(include_url=False):
        issue = _issue_from_error(err)
        if issue.message.startswith("Input should be ") and "input" in err:
            given.setdefault(issue.path, err["input"])
        issues.append(issue)
    return [_with_given(issue, given) for issue in _merge_union_issues(issues)]


def _shown(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _with_given(issue: ConfigIssue, given: dict[str, object]) -> ConfigIssue:
    """`Input should be a valid number` → `... number, not "5" (a quoted string); write 5 without quotes`."""
    if issue.path not in given:
        return issue
    value = given[issue.path]
    want = issue.message.removeprefix("Input should be ").split(",")[0]
    shown = _shown(value)
    hint = ""
    if isinstance(value, str) and ("number" in want or "integer" in want):
        try:
            float(value)
            hint = f"; write it without quotes: {value.strip()}"
        except ValueError:
            hint = "; write a JSON number, e.g. 5"
    elif isinstance(value, str) and "boolean" in want:
        hint = "; write true or false, without quotes"
    elif isinstance(value, bool) and ("number" in want or "integer" in want):
        hint = "; write a number, e.g. 5 (true and false are not numbers here)"
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and "string" in want:
        hint = f'; put it in quotes: "{value}"'
    elif "dictionary" in want or "object" in want:
        hint = "; write a JSON object: {...}"
    elif "list" in want:
        hint = "; write a JSON list: [...]"
    said = issue.message.split(",")[0] if issue.message.startswith("Input should be a valid ") else issue.message
    return ConfigIssue(issue.path, f"{said}, not {shown} ({_json_type(value)}){hint}")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _check_rest(data: JsonObject, source: str, checks: RestChecks) -> list[ConfigIssue]:
    """`checks` on the valid part of the file (see `pnr.model.partial`), less what the repair could cause."""
    part = partial_domain(data)
    if part is None:
        return []
    return [i for i in checks(part.domain, source, part.unjudged, part.places) if part.keeps(i)]


def read_input(path: Path, source: str, what: str, limit: int) -> str:
    """An input file's text (UTF-8, a byte-order mark allowed), or a ConfigError that says why not: a folder, too
    large (over `limit` bytes), missing, unreadable, not UTF-8. `what` names the file expected ("a compose file")."""
    try:
        if path.is_dir():
            raise ConfigError(source, [ConfigIssue("", f"is a directory; give {what}")])
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(source, [ConfigIssue("", f"is {size} bytes; files larger than {limit} are refused")])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found")]) from None
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, [ConfigIssue("", f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")]
        ) from None


def load_domain(path: str | Path, rest: RestChecks | None = None) -> Domain:
    """Read, parse and validate a domain config file. Every failure is a ConfigError (never a traceback).
    `rest`: see `parse_domain`."""
    path = Path(path)
    source = str(path)
    text = read_input(path, source, "a JSON config file", MAX_CONFIG_BYTES)
    dup_keys: dict[int, list[str]] = {}
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _no_dup_keys(pairs, dup_keys))
    except json.JSONDecodeError as exc:
        hint = ""
        if str(source).lower().endswith((".yml", ".yaml")):
            hint = f"; pnr reads JSON domain configs: `pnr import {source} -o domain.json` translates a compose file"
        where = f"line {exc.lineno} column {exc.colno}"
        # json's "Unterminated string starting at" (a file cut short) reads on with the place it names
        text = f": {exc.msg[0].lower()}{exc.msg[1:]} {where}" if exc.msg.endswith(" at") else f" at {where}: {exc.msg}"
        raise ConfigError(source, [ConfigIssue("", f"invalid JSON{text}{hint}")]) from None
    except RecursionError:
        raise ConfigError(source, [ConfigIssue("", f"nested deeper than {MAX_JSON_DEPTH} levels")]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(source, [ConfigIssue("", f"invalid JSON: {str(exc).split(':')[0]}")]) from None
    return parse_domain(data, source, dup_keys, rest)


def _no_dup_keys(pairs: list[tuple[str, JsonValue]], dups: dict[int, list[str]]) -> JsonObject:
    """json object hook: a repeated key would silently drop a value, so remember it (reported with its path)."""
    out: JsonObject = {}
    for key, value in pairs:
        if key in out:
            dups.setdefault(id(out), []).append(key)
        out[key] = value
    return out


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return "contains a lone UTF-16 surrogate (an invalid \\uXXXX escape)"
    return None


def _scan_text(data: JsonValue, dups: dict[int, list[str]]) -> list[ConfigIssue]:
    """Duplicate keys, NUL characters and lone surrogates anywhere in the document, with their JSON paths."""
    issues: list[ConfigIssue] = []
    stack: list[tuple[JsonValue, tuple[int | str, ...]]] = [(data, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, dict):
            for key in dups.get(id(node), []):
                issues.append(
                    ConfigIssue(json_path((*loc, key)), f"key {key!r} appears more than once in the same object")
                )
            for key, value in node.items():
                problem = _bad_text(key)
                if problem:
                    issues.append(ConfigIssue(json_path(loc) or json_path((key,)), f"key {key!r} {problem}"))
                stack.append((value, (*loc, key)))
        elif isinstance(node, list):
            stack.extend((value, (*loc, i)) for i, value in enumerate(node))
        elif isinstance(node, str):
            problem = _bad_text(node)
            if problem:
                issues.append(ConfigIssue(json_path(loc), f"value {problem}"))
    return issues


def _capped(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    if len(issues) <= MAX_ISSUES:
        return issues
    return [*issues[:MAX_ISSUES], ConfigIssue("", f"... and {len(issues) - MAX_ISSUES} more problems")]


def domain_json_schema() -> JsonObject:
    """The JSON Schema of a domain config, for editors (committed as pnr/model/schema.json)."""
    return Domain.model_json_schema()
