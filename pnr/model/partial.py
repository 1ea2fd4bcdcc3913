"""The valid part of an invalid config, for the plan's checks: a file's schema problems and its plan problems
(duplicate names, host ports, port keys, references, the signal graph) are then reported in one run.

A design chunk with a schema problem keeps what is valid: the keys pydantic complained about are removed (a
field with a default takes it), and the chunk is left out only when that is not enough (say, its `name`).
Plan problems that a removal could have caused are not reported: those under a removed key, those of a
health check whose check or ports lost a key, and references to a chunk that was left out or lost its ports.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from pydantic import ValidationError

from pnr.exceptions import ConfigIssue
from pnr.model.domain import DesignChunk, Domain
from pnr.model.paths import json_path
from pnr.records import JsonObject, JsonValue

MAX_ROUNDS = 5  # of removals per chunk (a removal may reveal a problem the first validation did not reach)


@dataclass
class Partial:
    """A valid domain made of the valid parts of a file, and what was taken out to make it."""

    domain: Domain
    places: dict[str, list[int]]  # cpux -> the index in the file of each chunk kept
    unjudged: set[str] = field(default_factory=set)  # chunks left out or without their ports: not referenced
    removed: list[str] = field(default_factory=list)  # JSON paths of the keys taken out
    shaky: list[str] = field(default_factory=list)  # JSON paths of health checks whose basis changed

    def keeps(self, issue: ConfigIssue) -> bool:
        """Whether a plan problem of this domain is one of the file's own (not caused by a removal)."""
        under = [*self.removed, *self.shaky]
        return not any(issue.path == p or issue.path.startswith((p + ".", p + "[")) for p in under)


def partial_domain(data: JsonObject) -> Partial | None:
    """The valid part of `data` (a parsed config whose validation failed), or None when even that is invalid
    (a bad top-level key)."""
    cpuxs = data.get("cpuxs")
    if not isinstance(cpuxs, dict):
        return None
    kept: dict[str, JsonObject] = {}  # cpux -> the cpux with the chunks kept (in kept_chunks)
    kept_chunks: dict[str, list[JsonValue]] = {}
    places: dict[str, list[int]] = {}
    unjudged: set[str] = set()
    removed: list[str] = []
    shaky: list[str] = []
    for cpux_name, cpux in cpuxs.items():
        chunks = cpux.get("design_chunks") if isinstance(cpux, dict) else None
        if not isinstance(cpux, dict) or not isinstance(chunks, list):
            continue
        for index, chunk in enumerate(chunks):
            fixed, locs = _valid_part(chunk)
            where = f"cpuxs.{cpux_name}.design_chunks[{index}]" if isinstance(cpux_name, str) else ""
            name = chunk.get("name") if isinstance(chunk, dict) else None
            if fixed is None:
                if isinstance(name, str):
                    unjudged.add(name)
                continue
            if cpux_name not in kept:
                kept_chunks[cpux_name] = []
                kept[cpux_name] = {**cpux, "design_chunks": kept_chunks[cpux_name]}
            kept_chunks[cpux_name].append(fixed)
            places.setdefault(cpux_name, []).append(index)
            removed += [_under(where, json_path(loc)) for loc in locs]
            if any(loc[0] == "container" and loc[1:2] in ((), ("ports",)) for loc in locs):
                unjudged.add(str(fixed["name"]))
                shaky.append(f"{where}.health_check")
            if any(loc[0] == "health_check" for loc in locs):
                shaky.append(f"{where}.health_check")
    try:
        domain = Domain.model_validate({**data, "cpuxs": kept})
    except ValidationError:
        return None
    return Partial(domain, places, unjudged, removed, shaky)


def _under(parent: str, path: str) -> str:
    return parent + path if path.startswith("[") else f"{parent}.{path}"


def _valid_part(chunk: JsonValue) -> tuple[JsonObject | None, list[tuple[str, ...]]]:
    """The chunk without the keys that make it invalid, and the paths of those keys; None if that fails."""
    if not isinstance(chunk, dict):
        return None, []
    doc = copy.deepcopy(chunk)
    locs: list[tuple[str, ...]] = []
    for _ in range(MAX_ROUNDS):
        try:
            DesignChunk.model_validate(doc)
            return doc, locs
        except ValidationError as exc:
            found = [_remove(doc, tuple(err["loc"])) for err in exc.errors(include_url=False)]
            done = [loc for loc in found if loc is not None]
            if not done:
                return None, locs
            locs += done
    return None, locs


def _remove(doc: JsonObject, loc: tuple[int | str, ...]) -> tuple[str, ...] | None:
    """Delete the deepest object key on `loc` that exists in `doc` (skipping the tags pydantic puts in a
    location for a union member); its path, or None when there is none (or it is a key no chunk can lose)."""
    node: JsonValue = doc
    walked: list[int | str] = []
    deepest: tuple[JsonObject, str, tuple[str, ...]] | None = None
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            walked.append(part)
            if all(isinstance(p, str) for p in walked):  # a key of objects all the way (list items keep places)
                deepest = (node, part, tuple(str(p) for p in walked))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            walked.append(part)
            node = node[part]
    if deepest is None or deepest[2] in (("name",), ("container",)):
        return None
    parent, key, path = deepest
    del parent[key]
    return path
