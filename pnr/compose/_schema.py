"""The compose-spec JSON schema (bundled as package data) and validation against it, with readable paths."""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import import_module, resources
from typing import Any

from pnr.compose._yaml import YamlDoc, key_path
from pnr.exceptions import ConfigIssue

# imported by name: the checks below must hold whether or not jsonschema's type stubs are installed
jsonschema: Any = import_module("jsonschema")
_exceptions: Any = import_module("jsonschema.exceptions")
ValidationError = Any  # jsonschema.exceptions.ValidationError

SCHEMA_FILE = "compose-spec.json"
# Where the bundled schema comes from (docs/compose.md says the same).
SCHEMA_ORIGIN = (
    "compose-spec/compose-go schema/compose-spec.json at commit e70e961c3a3a (2026-07-21; the schema "
    "last changed in faa67b213c47, 2026-06-29: pre_start hooks), JSON Schema draft 2020-12"
)


@functools.cache
def compose_schema() -> dict[str, Any]:
    """The bundled compose-spec JSON schema."""
    text = resources.files("pnr.compose").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def service_keys() -> list[str]:
    """Every key a compose service may have, per the bundled schema (`x-` extensions aside)."""
    return sorted(compose_schema()["$defs"]["service"]["properties"])


@functools.cache
def _validator() -> Any:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


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
        allowed = sorted(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
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
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return [(path, f"{_short(error.instance)} is not a valid {names}")]
    if error.validator == "enum":
        return [(path, f"{_short(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}")]
    if error.validator == "uniqueItems":
        return [(path, "the list has the same item twice")]
    return [(path, error.message)]


def _matches(pattern: str, key: Any) -> bool:
    return isinstance(key, str) and re.search(pattern, key) is not None


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
