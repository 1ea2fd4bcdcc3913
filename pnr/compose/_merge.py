"""The compose specification's merge rules, for `-f a.yml -f b.yml`, override files and `extends`.

Mappings are merged key by key; sequences are appended, except the shell commands (`command`, `entrypoint`,
`healthcheck.test`: the later one replaces), the list-or-mapping keys (`environment`, `labels`, ...: merged as
mappings) and the unique resources (`ports`, `volumes`, `secrets`, `configs`: an entry with the same unique key
replaces the earlier one). Scalars: the later one wins.
"""

from __future__ import annotations

import json

from pnr.records import JsonObject, JsonValue

REPLACED = frozenset({"command", "entrypoint", "test"})
MAPPING_LISTS = frozenset({"environment", "labels", "annotations", "args", "sysctls", "extra_hosts"})
UNIQUE = frozenset({"ports", "volumes", "secrets", "configs"})


def merge(base: JsonValue, over: JsonValue, key: str = "") -> JsonValue:
    """`over` merged into `base` (neither is changed)."""
    if key in MAPPING_LISTS or key == "depends_on":
        base, over = as_mapping(base, key), as_mapping(over, key)
    if isinstance(base, dict) and isinstance(over, dict):
        return merge_mappings(base, over)
    if isinstance(base, list) and isinstance(over, list) and key not in REPLACED:
        return _merge_unique(base, over, key) if key in UNIQUE else _append(base, over)
    return over


def merge_mappings(base: JsonObject, over: JsonObject) -> JsonObject:
    """Two mappings (files, services) merged key by key (neither is changed)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v, k) if k in base else v
    return out


def as_mapping(value: JsonValue, key: str = "") -> JsonValue:
    """A list-or-mapping value as a mapping (`["A=1", "B"]` → `{"A": "1", "B": None}`); `depends_on: [a]` as
    `{"a": {"condition": "service_started"}}`; anything else as it is."""
    if not isinstance(value, list):
        return value
    out: JsonObject = {}
    if key == "depends_on":
        for name in value:
            out[str(name)] = {"condition": "service_started"}
        return out
    sep = ":" if key == "extra_hosts" else "="
    for item in value:
        name, found, rest = str(item).partition(sep)
        out[name] = rest if found else None
    return out


def _append(base: list[JsonValue], over: list[JsonValue]) -> list[JsonValue]:
    seen = {_canonical(item) for item in base}
    return base + [item for item in over if _canonical(item) not in seen]


def _merge_unique(base: list[JsonValue], over: list[JsonValue], key: str) -> list[JsonValue]:
    out: JsonObject = {_unique_key(item, key): item for item in base}
    for item in over:
        out[_unique_key(item, key)] = item  # an entry with the same key replaces the earlier one, in its place
    return list(out.values())


def _unique_key(item: JsonValue, key: str) -> str:
    if key == "volumes":
        if isinstance(item, dict):
            return str(item.get("target"))
        parts = str(item).split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    if key in ("secrets", "configs"):
        if isinstance(item, dict):
            return str(item.get("target") or item.get("source"))
        return str(item)
    if isinstance(item, dict):  # ports
        return _canonical([item.get(k) for k in ("host_ip", "target", "published", "protocol")])
    return str(item)


def _canonical(item: JsonValue) -> str:
    return json.dumps(item, sort_keys=True, default=str)
