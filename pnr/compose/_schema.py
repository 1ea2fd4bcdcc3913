"""The compose-spec JSON schema (bundled as package data) and validation against it, with readable paths."""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Sequence
from importlib import import_module, resources
from typing import Protocol, TypedDict

from pnr.compose._yaml import YamlDoc, key_path
from pnr.exceptions import ConfigIssue
from pnr.records import JsonObject, JsonValue

SCHEMA_FILE = "compose-spec.json"
# Where the bundled schema comes from (docs/compose.md says the same).
SCHEMA_ORIGIN = (
    "compose-spec/compose-go schema/compose-spec.json at commit e70e961c3a3a (2026-07-21; the schema "
    "last changed in faa67b213c47, 2026-06-29: pre_start hooks), JSON Schema draft 2020-12"
)


class _Definition(TypedDict, total=False):
    properties: JsonObject


ComposeSchema = TypedDict("ComposeSchema", {"$defs": dict[str, _Definition]})


class ValidationError(Protocol):
    """What the messages read of a `jsonschema.exceptions.ValidationError` (jsonschema is imported by name: the
    checks below must hold whether or not its type stubs are installed)."""

    message: str
    validator: str
    validator_value: JsonValue
    instance: JsonValue
    schema: JsonValue
    absolute_path: Sequence[str | int]
    relative_path: Sequence[str | int]
    context: list[ValidationError]


class _Validator(Protocol):
    def iter_errors(self, instance: JsonValue) -> Iterator[ValidationError]: ...


@functools.cache
def compose_schema() -> ComposeSchema:
    """The bundled compose-spec JSON schema."""
    text = resources.files("pnr.compose").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: ComposeSchema = json.loads(text)
    return schema


def service_keys() -> list[str]:
    """Every key a compose service may have, per the bundled schema (`x-` extensions aside)."""
    return sorted(compose_schema()["$defs"]["service"]["properties"])


@functools.cache
def _validator() -> _Validator:
    schema = compose_schema()
    validators = import_module("jsonschema.validators")
    validator: _Validator = validators.validator_for(schema)(schema)
    return validator


def validate(doc: YamlDoc) -> list[ConfigIssue]:
    """Schema violations of the whole document, each with its path (and line)."""
    issues: dict[tuple[str, str], ConfigIssue] = {}
    for error in _validator().iter_errors(doc.data):
        for path, message in _explain(error):
            issues.setdefault((path, message), doc.issue(path, message))
    return sorted(issues.values(), key=lambda i: i.path)


def _path_of(error: ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path = key_path(path, part if isinstance(part, int) else str(part))
    return path


def _explain(error: ValidationError) -> list[tuple[str, str]]:
    # a value that fits no branch of a oneOf: explain the branch that came closest
    if error.validator in ("oneOf", "anyOf") and error.context:
        # branches of the right type failed deeper down: explain the deepest of those
        fitting = [e for e in error.context if e.validator != "type" or e.relative_path]
        if fitting:
            return _explain(max(fitting, key=lambda e: len(e.absolute_path)))
        kinds = sorted(
            {str(e.schema.get("type")) for e in error.context if isinstance(e.schema, dict) and "type" in e.schema}
        )
        shown = _short(error.instance)
        return [
            (
                _path_of(error),
                f"{shown} is not allowed here" + (f" (expected {' or '.join(kinds)})" if kinds else ""),
            )
        ]
    path = _path_of(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = sorted(_keys(schema.get("properties")))
        patterns = _keys(schema.get("patternProperties"))
        out = []
        for key in error.instance:
            if key in allowed or any(_matches(p, key) for p in patterns):
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            out.append((key_path(path, str(key)), f"unknown key {key!r}{hint}"))
        if out:
            return out
    if error.validator == "required":
        return [(path, f"{error.message.split(' is a required property')[0]} is required here")]
    if error.validator == "type":
        expected = error.validator_value
        names = " or ".join(map(str, expected)) if isinstance(expected, list) else str(expected)
        return [(path, f"{_short(error.instance)} is not a valid {names}")]
    if error.validator == "enum":
        options = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [(path, f"{_short(error.instance)} is not one of {', '.join(map(repr, options))}")]
    if error.validator == "uniqueItems":
        return [(path, "the list has the same item twice")]
    return [(path, error.message)]


def _keys(value: JsonValue) -> list[str]:
    """The keys of a schema's `properties` / `patternProperties` ([] when it has none)."""
    return list(value) if isinstance(value, dict) else []


def _matches(pattern: str, key: str) -> bool:
    return re.search(pattern, key) is not None


def _short(value: JsonValue) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
