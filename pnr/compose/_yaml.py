"""Reading a compose file: YAML with the scalars of YAML 1.2 (as compose v2 reads it), the line of every key
remembered for messages, and the shapes compose refuses (duplicate keys) refused here too."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from pnr.exceptions import ConfigIssue, path_join
from pnr.records import JsonValue

MAX_NODES = 200_000  # after alias expansion: a "billion laughs" file is refused, not walked
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


def key_path(parent: str, key: str | int) -> str:
    """`services` + `web` → `services.web`; list indexes as `[0]`; keys with dots or odd characters quoted,
    so `services["web.v2"].image` stays unambiguous."""
    return path_join(parent, key)


@dataclass
class YamlDoc:
    """The parsed document and the 1-based line where each path starts (for messages)."""

    data: JsonValue
    lines: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # paths whose line is in another file: that file

    def _known(self, path: str) -> str:
        """`path`, or its nearest ancestor with a line ("" when none has one)."""
        while path and path not in self.lines:
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return path

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        return self.lines.get(self._known(path))

    def where(self, path: str) -> str:
        """`line 4`, or `compose.override.yaml line 4` for a path from another file ("" when unknown)."""
        known = self._known(path)
        if known not in self.lines:
            return ""
        other = self.files.get(known)
        return f"{other} line {self.lines[known]}" if other else f"line {self.lines[known]}"

    def add(self, other: YamlDoc, label: str) -> None:
        """Take the lines of `other` (a file merged into this one) for the paths this one has none for."""
        for path, line in other.lines.items():
            if path not in self.lines:
                self.lines[path] = line
                self.files[path] = label

    def issue(self, path: str, message: str) -> ConfigIssue:
        where = self.where(path)
        return ConfigIssue(path, f"{message} ({where})" if where else message)


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_DROPPED = (_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core scalars, as compose v2 reads files (Go's yaml.v3): `no`, `on`
    and `yes` are strings (`restart: no`), `22:22` is a string, not the base-60 integer 1342, a date is a
    string, `0755` is 755."""


_Loader.yaml_implicit_resolvers = {  # a copy without YAML 1.1's scalars; SafeLoader itself is left alone
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"  # type: ignore[arg-type]


_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _flatten_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """YAML's merge keys: `<<: [*first, *second]` takes each key from the *earliest* mapping that has it, and the
    mapping's own keys win over all of them (PyYAML 6.0.4 dedups merged keys by object identity, so a later
    mapping can win there)."""
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    own: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            own.append((key_node, value_node))
            continue
        subs = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for sub in subs:
            if not isinstance(sub, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "a merge key takes mappings", sub.start_mark
                )
            _flatten_mapping(loader, sub)
            merged.extend(sub.value)
    seen: set[object] = set()
    first: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in merged:
        key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else id(key_node)
        if key not in seen:
            seen.add(key)
            first.append((key_node, value_node))
    node.value = first + own


_Loader.flatten_mapping = _flatten_mapping  # type: ignore[method-assign,assignment]
_Loader.add_constructor(_INT, _construct_int)
_Loader.add_constructor(_BOOL, _construct_bool)


def load_yaml(text: str) -> tuple[YamlDoc | None, list[ConfigIssue]]:
    """Parse one YAML document; on failure, the issues say where (line and column)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        issues: list[ConfigIssue] = []
        lines: dict[str, int] = {}
        if node is not None:
            _walk(node, "", lines, issues, set(), [0], 0)
        if issues:
            return None, issues
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        return None, [ConfigIssue("", _yaml_message(exc))]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue("", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    return YamlDoc(data, lines), []


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    what = exc.problem or exc.context or "cannot be parsed"
    if exc.context and exc.problem:
        what = f"{exc.context}: {exc.problem}"
    return f"invalid YAML{where}: {what}"


def _walk(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    issues: list[ConfigIssue],
    active: set[int],
    count: list[int],
    depth: int,
) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise yaml.YAMLError(f"more than {MAX_NODES} values after expanding aliases; refused")
    if depth > MAX_DEPTH:
        raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
    if id(node) in active:
        issues.append(
            ConfigIssue(path, f"an alias refers to a value that contains it (line {node.start_mark.line + 1})")
        )
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                _walk(value_node, path, lines, issues, active, count, depth + 1)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(path, f"a key must be a string (line {key_node.start_mark.line + 1})"))
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key_node.tag != _STR_TAG:
                kind = key_node.tag.rsplit(":", 1)[-1]
                issues.append(
                    ConfigIssue(
                        key_path(path, key),
                        f"key {key!r} is read as YAML {kind}, not a string; quote it (line {line})",
                    )
                )
                continue
            if key in seen:
                issues.append(
                    ConfigIssue(
                        key_path(path, key),
                        f"key {key!r} appears twice in the same mapping (lines {seen[key]} and {line})",
                    )
                )
            seen[key] = line
            child = key_path(path, key)
            lines.setdefault(child, line)
            _walk(value_node, child, lines, issues, active, count, depth + 1)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for i, item in enumerate(node.value):
            _walk(item, key_path(path, i), lines, issues, active, count, depth + 1)
        active.discard(id(node))
