"""Static analysis of a domain before any container starts: who produces each signal, who waits on it,
in which order chunks can come up, and every semantic problem (with JSON paths)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from pnr.exceptions import ConfigError, ConfigIssue, path_join
from pnr.model.checks import AllCheck, AnyCheck, CheckBase, PortCheck, SignalCheck, iter_checks
from pnr.model.container import PortBinding
from pnr.model.domain import Cpux, DesignChunk, Domain
from pnr.model.engines import DEFAULT_ENGINE
from pnr.model.env import ChunkReference, chunk_references, domain_environ, expand_env, find_port_key
from pnr.model.fields import PnR

SYSTEM_READY = "system_ready"
SYSTEM_READY_VALUE = PnR(prompt="is system ready?", response=["yes"], tv="Y")  # what every bring-up starts from
PNR_ITSELF = "(pnr)"


@dataclass(frozen=True)
class ChunkRef:
    cpux: str
    name: str
    index: int  # position in its cpux's design_chunks

    @property
    def path(self) -> str:
        return f"cpuxs.{self.cpux}.design_chunks[{self.index}]"


class SignalJson(TypedDict):
    producers: list[str]
    consumers: list[str]
    external: bool


class ChunkJson(TypedDict):
    cpux: str
    container: str
    waits_on: dict[str, str]
    depends_on: list[str]
    produces: list[str]


class PlanJson(TypedDict):
    """The plan as `pnr plan --json` prints it."""

    domain: str
    cpux_order: list[str]
    levels: dict[str, list[list[str]]]
    signals: dict[str, SignalJson]
    chunks: dict[str, ChunkJson]


@dataclass
class Plan:
    """The signal graph of a domain. Built by `make_plan`, which raises ConfigError on any problem."""

    domain: Domain
    chunks: dict[str, DesignChunk]  # every chunk by name (names are unique in a domain)
    refs: dict[str, ChunkRef]
    producers: dict[str, list[str]]  # signal -> chunk names (or PNR_ITSELF) that write it
    consumers: dict[str, list[str]]  # signal -> chunk names whose gatekeeper reads it
    external: list[str]  # gate signals that nothing in the domain produces: someone outside must set them
    depends_on: dict[str, list[str]]  # chunk -> producer chunks of its gate signals
    levels: dict[str, list[list[str]]]  # cpux -> chunk names by level (level 0 needs no other chunk)
    cpux_order: list[str]
    source: str = "<config>"  # the config file: relative paths in it (build_path, tls files) start at its folder

    @property
    def base_dir(self) -> Path:
        """The config file's folder (the working directory for a config that is not a file)."""
        return _base_dir(self.source)

    def chunks_of(self, cpux: str) -> list[str]:
        return [name for level in self.levels[cpux] for name in level]

    def near_miss(self, signal: str) -> str:
        """` (did you mean db_healthy?)` when an external signal is one typo away from one the domain produces,
        else "": a misspelt gate signal is otherwise an external signal that `up` waits on until its timeout."""
        import difflib

        produced = [s for s in self.producers if s != signal]
        close = difflib.get_close_matches(signal, produced, n=1, cutoff=0.8)
        return f" (did you mean {close[0]}?)" if close else ""

    def cpuxs_to_run(self, cpux: str | None, source: str | None = None) -> list[str]:
        """Every CPUX in order, or only `cpux` (`--cpux`); a name the config does not have is bad input."""
        if cpux is None:
            return list(self.cpux_order)
        if cpux not in self.domain.cpuxs:
            have = ", ".join(self.domain.cpuxs)
            raise ConfigError(
                source or self.source, [ConfigIssue("cpuxs", f"no cpux named {cpux!r}; the config has {have}")]
            )
        return [cpux]

    def signals_produced_in(self, cpuxs: list[str]) -> set[str]:
        names = {n for c in cpuxs for n in self.chunks_of(c)}
        return {sig for sig, prods in self.producers.items() if any(p in names for p in prods)}

    def to_dict(self) -> PlanJson:
        return {
            "domain": self.domain.name,
            "cpux_order": self.cpux_order,
            "levels": self.levels,
            "signals": {
                sig: {
                    "producers": self.producers.get(sig, []),
                    "consumers": self.consumers.get(sig, []),
                    "external": sig in self.external,
                }
                for sig in sorted(set(self.producers) | set(self.consumers))
            },
            "chunks": {
                name: {
                    "cpux": ref.cpux,
                    "container": self.chunks[name].container.name,
                    "waits_on": {s: p.tv for s, p in self.chunks[name].gatekeeper.items()},
                    "depends_on": self.depends_on[name],
                    "produces": sorted(produced_by(self.chunks[name])),
                }
                for name, ref in self.refs.items()
            },
        }

    def render_text(self) -> str:
        lines = [f"domain {self.domain.name}"]
        for cpux in self.cpux_order:
            lines.append(f"  cpux {cpux}")
            for i, level in enumerate(self.levels[cpux]):
                lines.append(f"    level {i}")
                for name in level:
                    chunk = self.chunks[name]
                    gates = ", ".join(f"{s}={p.tv}" for s, p in chunk.gatekeeper.items()) or "nothing"
                    outs = ", ".join(sorted(produced_by(chunk))) or "nothing"
                    lines.append(f"      {name:<20} waits on {gates}; produces {outs}")
        if self.external:
            lines.append("external signals (nothing in this domain produces them; `up` waits until someone sets them):")
            for sig in self.external:
                lines.append(
                    f"  {sig}  <- pnr signal set CONFIG {sig} --tv Y   (waited on by {', '.join(self.consumers[sig])})"
                    + self.near_miss(sig)
                )
        return "\n".join(lines)

    def render_mermaid(self) -> str:
        lines = ["flowchart LR"]
        node = {name: f"c{i}" for i, name in enumerate(self.refs)}
        for cpux in self.cpux_order:
            lines.append(f"  subgraph {cpux}")
            for name in self.chunks_of(cpux):
                lines.append(f'    {node[name]}["{name}"]')
            lines.append("  end")
        if SYSTEM_READY in self.consumers:
            lines.append('  pnr(["pnr"])')
        for sig in self.external:
            lines.append(f'  ext_{_mermaid_id(sig)}(["{sig} (external)"])')
        for name, chunk in self.chunks.items():
            for sig in chunk.gatekeeper:
                for prod in self.producers.get(sig, []):
                    src = "pnr" if prod == PNR_ITSELF else node[prod]
                    lines.append(f"  {src} -- {sig} --> {node[name]}")
                if sig in self.external:
                    lines.append(f"  ext_{_mermaid_id(sig)} -- {sig} --> {node[name]}")
        return "\n".join(lines)

    def render_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _mermaid_id(sig: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in sig)


def produced_by(chunk: DesignChunk) -> set[str]:
    """Signals a chunk writes: its flowout, on_start and status mappings, and the signals its signal probes await
    (the container writes them; as the chunk's own, a value left from an earlier run never satisfies them)."""
    out = set(chunk.flowout) | set(chunk.on_start)
    if chunk.health_check is not None:
        mapping = chunk.health_check.status_mapping
        out |= {m.key for m in (mapping.success, mapping.failure) if m is not None}
        out |= {c.signal for c in iter_checks(chunk.health_check) if isinstance(c, SignalCheck)}
    return out


_CONTAINER_PORT_RE = re.compile(r"^\d{1,5}(/tcp)?$")


def _port_key_issues(check: CheckBase, path: str, bindings: Mapping[str, PortBinding]) -> list[ConfigIssue]:
    """Only kinds that dial a port need port_key: a key of container.ports, or (target "network") any
    container port."""
    if isinstance(check, (AllCheck, AnyCheck)):
        return [i for n, c in enumerate(check.checks) for i in _port_key_issues(c, f"{path}.checks[{n}]", bindings)]
    if not isinstance(check, PortCheck):
        return []
    if check.port_key is None:
        hint = ", ".join(bindings) or '(none declared; with "target": "network" give the container port)'
        return [
            ConfigIssue(
                f"{path}.port_key",
                f"a {getattr(check, 'type', 'port')} check needs port_key, one of the container's ports: {hint}",
            )
        ]
    if check.port_key in bindings:
        return []
    if check.target == "network":
        if _CONTAINER_PORT_RE.match(check.port_key) and 1 <= int(check.port_key.split("/")[0]) <= 65535:
            return []
        return [
            ConfigIssue(
                f"{path}.port_key",
                f"{check.port_key!r} must be a key of container.ports or a container port like '8080' or '8080/tcp'",
            )
        ]
    return [
        ConfigIssue(
            f"{path}.port_key",
            f"{check.port_key!r} is not a key of container.ports ({', '.join(bindings) or 'no ports declared'}); "
            'add it to ports, fix port_key, or probe the container\'s own address with "target": "network"',
        )
    ]


class _ChunkChecks:
    """The per-chunk checks of `make_plan`: unique names, unique host ports, health checks that fit."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.issues: list[ConfigIssue] = []
        self.chunks: dict[str, DesignChunk] = {}
        self.refs: dict[str, ChunkRef] = {}
        self._containers: dict[str, str] = {}
        # (engine, port, protocol) -> host ip -> chunk (indexed: big configs stay fast); engines publish apart
        self._host_ports: dict[tuple[str, int, str], dict[str, str]] = {}

    def add(self, ref: ChunkRef, chunk: DesignChunk) -> None:
        if chunk.name in self.refs:
            self._issue(
                f"{ref.path}.name",
                f"duplicate chunk name {chunk.name!r} (also at {self.refs[chunk.name].path}); "
                "chunk names must be unique in a domain",
            )
        else:
            self.chunks[chunk.name] = chunk
            self.refs[chunk.name] = ref
        cname = chunk.container.name
        if cname in self._containers:
            self._issue(
                f"{ref.path}.container.name",
                f"duplicate container name {cname!r} (also used by chunk {self._containers[cname]!r})",
            )
        else:
            self._containers[cname] = chunk.name
        if chunk.engine not in (None, DEFAULT_ENGINE) and chunk.engine not in self.domain.engines:
            known = ", ".join(self.domain.engines) or "none declared"
            self._issue(
                f"{ref.path}.engine",
                f"unknown engine {chunk.engine!r} (engines: {known}); declare it under the domain's engines, "
                "or leave engine out to use the environment's engine",
            )
        bindings = self.domain.port_bindings(chunk)
        self._host_port_clashes(ref, chunk, bindings)
        check = chunk.health_check
        if check is not None and chunk.kind == "job":
            self._issue(
                f"{ref.path}.health_check",
                'a job chunk is completed when its container exits 0; remove health_check, or drop "kind": "job"',
            )
        elif check is not None:
            self.issues.extend(_port_key_issues(check, f"{ref.path}.health_check", bindings))
        if SYSTEM_READY in produced_by(chunk):
            self._issue(ref.path, f"'{SYSTEM_READY}' is set by pnr itself when a run starts; a chunk cannot produce it")

    def _host_port_clashes(self, ref: ChunkRef, chunk: DesignChunk, bindings: Mapping[str, PortBinding]) -> None:
        engine = self.domain.engine_of(chunk)
        for key, b in bindings.items():
            by_ip = self._host_ports.setdefault((engine, b.host_port, b.protocol), {})
            clash = [c for ip, c in by_ip.items() if ip == b.host_ip or "0.0.0.0" in (ip, b.host_ip)]
            if clash:
                self._issue(
                    f"{ref.path}.container.ports.{key}",
                    f"host port {b.host_port} is already published by chunk {clash[0]!r}; pick another host port",
                )
            else:
                by_ip[b.host_ip] = chunk.name

    def _issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))


def make_plan(domain: Domain, source: str = "<config>") -> Plan:
    """The signal graph of a domain, or one ConfigError with every semantic problem and its JSON path."""
    graph = _Graph(domain, source)
    if graph.issues:
        raise ConfigError(source, graph.issues)
    cpux_order = _topo(list(domain.cpuxs), graph.cpux_deps)
    levels = {cpux_name: _levels(cpux, graph.depends_on) for cpux_name, cpux in domain.cpuxs.items()}
    external = sorted(sig for sig in graph.consumers if sig not in graph.producers)
    return Plan(
        domain,
        graph.chunks,
        graph.refs,
        graph.producers,
        graph.consumers,
        external,
        graph.depends_on,
        levels,
        cpux_order,
        source,
    )


def plan_issues(
    domain: Domain,
    source: str = "<config>",
    left_out: set[str] | None = None,
    places: dict[str, list[int]] | None = None,
) -> list[ConfigIssue]:
    """Every semantic problem of `domain` (what `make_plan` raises), for a domain that is the valid part of a
    file: `left_out` names the chunks that were dropped (a reference to one is not a problem here), `places`
    the original index of each kept chunk in its cpux's design_chunks (for the JSON paths)."""
    return _Graph(domain, source, left_out or set(), places or {}).issues


class _Graph:
    """The signal graph's parts and every problem found while building them."""

    def __init__(
        self, domain: Domain, source: str, left_out: set[str] | None = None, places: dict[str, list[int]] | None = None
    ) -> None:
        checks = _ChunkChecks(domain)
        for cpux_name, cpux in domain.cpuxs.items():
            where = (places or {}).get(cpux_name)
            for index, chunk in enumerate(cpux.design_chunks):
                checks.add(ChunkRef(cpux_name, chunk.name, where[index] if where else index), chunk)
        self.chunks, self.refs, issues = checks.chunks, checks.refs, checks.issues
        issues[:0] = _engine_issues(domain, source)
        issues.extend(_reference_issues(domain, self.chunks, self.refs, left_out or set()))
        self.producers: dict[str, list[str]] = {SYSTEM_READY: [PNR_ITSELF]}
        self.consumers: dict[str, list[str]] = {}
        for name, chunk in self.chunks.items():
            for sig in sorted(produced_by(chunk)):
                self.producers.setdefault(sig, []).append(name)
            for sig in chunk.gatekeeper:
                self.consumers.setdefault(sig, []).append(name)
        self.depends_on = {
            name: sorted(
                {p for sig in chunk.gatekeeper for p in self.producers.get(sig, []) if p not in (PNR_ITSELF, name)}
            )
            for name, chunk in self.chunks.items()
        }
        graph_issues = _graph_issues(self.chunks, self.refs, self.producers, self.depends_on)
        issues.extend(graph_issues)
        self.cpux_deps = _cpux_deps(domain, self.refs, self.depends_on)
        cpux_cycle = _find_cycle(self.cpux_deps) if not graph_issues else None  # a chunk cycle says it already
        if cpux_cycle:
            issues.append(
                ConfigIssue(
                    "cpuxs",
                    f"cpuxs wait on each other's signals in a cycle: {' -> '.join(cpux_cycle)}; "
                    "merge them into one cpux",
                )
            )
        self.issues = issues


def _base_dir(source: str) -> Path:
    path = Path(source)
    return path.resolve().parent if not source.startswith("<") else Path.cwd()


def _engine_issues(domain: Domain, source: str) -> list[ConfigIssue]:
    """The reserved engine name, and TLS files that do not exist (relative to the config file)."""
    issues = []
    for name, spec in domain.engines.items():
        if name == DEFAULT_ENGINE:
            issues.append(
                ConfigIssue(
                    f"engines.{name}",
                    f"{DEFAULT_ENGINE!r} is the environment's engine (chunks without `engine`); "
                    "give this engine another name",
                )
            )
        for field, path in (spec.tls.files() if spec.tls is not None else {}).items():
            full = _base_dir(source) / Path(path).expanduser()
            if not full.is_file():
                issues.append(
                    ConfigIssue(
                        f"engines.{name}.tls.{field}",
                        f"file {path!r} not found ({full}); paths are relative to the config file",
                    )
                )
    return issues


def _reference_issues(
    domain: Domain, chunks: dict[str, DesignChunk], refs: dict[str, ChunkRef], left_out: set[str]
) -> list[ConfigIssue]:
    """`${chunk:NAME.host}` / `${chunk:NAME.port:KEY}` in env: well formed, NAME a chunk, KEY one of its ports."""
    issues = []
    for name, chunk in chunks.items():
        for key, ref in chunk_references(chunk):
            path = f"{refs[name].path}.container.env.{key}"
            if not isinstance(ref, ChunkReference):
                issues.append(ConfigIssue(path, str(ref)))
                continue
            if ref.chunk in left_out:
                continue  # a chunk with problems of its own, reported already
            target = chunks.get(ref.chunk)
            if target is None:
                issues.append(ConfigIssue(path, f"{ref}: no chunk named {ref.chunk!r} in this domain"))
            elif ref.what == "port" and find_port_key(domain.port_bindings(target), ref.port_key or "") is None:
                ports = ", ".join(target.container.ports) or "none"
                issues.append(
                    ConfigIssue(path, f"{ref}: {ref.port_key!r} is not a key of chunk {ref.chunk}'s ports ({ports})")
                )
    return issues


def _graph_issues(
    chunks: dict[str, DesignChunk],
    refs: dict[str, ChunkRef],
    producers: dict[str, list[str]],
    depends_on: dict[str, list[str]],
) -> list[ConfigIssue]:
    """Gates only the chunk itself could open, and cycles: chunks that can never start."""
    issues = [
        ConfigIssue(
            f"{refs[name].path}.gatekeeper.{sig}",
            f"chunk {name!r} waits on {sig!r}, which only it produces: it can never start",
        )
        for name, chunk in chunks.items()
        for sig in chunk.gatekeeper
        if producers.get(sig) == [name]
    ]
    issues.extend(_unwritten_flowout_issues(chunks, refs, producers))
    cycle = _find_cycle(depends_on)
    if cycle:
        steps = " -> ".join(cycle)
        issues.append(
            ConfigIssue(
                f"{refs[cycle[0]].path}.gatekeeper",
                f"the signal graph has a cycle: {steps}; no chunk in it can ever start",
            )
        )
    return issues


def _unwritten_flowout_issues(
    chunks: dict[str, DesignChunk], refs: dict[str, ChunkRef], producers: dict[str, list[str]]
) -> list[ConfigIssue]:
    """A chunk whose health check has a success mapping is complete when its flowout holds, but only that
    mapping, on_start, its signal checks or another chunk write those signals (without a success mapping the
    passed probe writes the flowout): a flowout signal none of them writes would keep the run waiting until its
    deadline although the probe passed."""
    issues = []
    for name, chunk in chunks.items():
        check = chunk.health_check
        if check is None or check.status_mapping.success is None or chunk.kind == "job":
            continue  # these write their flowout themselves
        success = check.status_mapping.success
        own = {success.key, *chunk.on_start} | {c.signal for c in iter_checks(check) if isinstance(c, SignalCheck)}
        for sig in chunk.flowout:
            if sig in own or any(p != name for p in producers.get(sig, [])):
                continue
            issues.append(
                ConfigIssue(
                    path_join(f"{refs[name].path}.flowout", sig),
                    f"chunk {name!r} promises {sig!r}, but nothing writes it (its status_mapping.success writes "
                    f"{success.key!r}); the run would wait for it until its deadline. Fix: set the success mapping's "
                    f'"key" to "{sig}", or remove "{sig}" from flowout',
                )
            )
    return issues


def _cpux_deps(domain: Domain, refs: dict[str, ChunkRef], depends_on: dict[str, list[str]]) -> dict[str, list[str]]:
    """A cpux waiting on a signal produced in another cpux runs after it."""
    cpux_deps: dict[str, list[str]] = {c: [] for c in domain.cpuxs}
    for name, deps in depends_on.items():
        for dep in deps:
            mine, theirs = refs[name].cpux, refs[dep].cpux
            if mine != theirs and theirs not in cpux_deps[mine]:
                cpux_deps[mine].append(theirs)
    return cpux_deps


def _levels(cpux: Cpux, depends_on: dict[str, list[str]]) -> list[list[str]]:
    """Start levels of one cpux: level n waits only on chunks of levels below n."""
    names = [c.name for c in cpux.design_chunks]
    level_of: dict[str, int] = {}
    for n in _topo(names, {n: [d for d in depends_on[n] if d in names] for n in names}):
        level_of[n] = 1 + max((level_of[d] for d in depends_on[n] if d in names), default=-1)
    grouped: list[list[str]] = [[] for _ in range(1 + max(level_of.values(), default=-1))]
    for n in names:
        grouped[level_of[n]].append(n)
    return grouped


def _topo(nodes: list[str], deps: dict[str, list[str]]) -> list[str]:
    """Dependencies first; ties keep declaration order. Assumes no cycle."""
    out: list[str] = []
    seen: set[str] = set()
    for start in nodes:
        stack = [(start, iter(deps.get(start, [])))]
        if start in seen:
            continue
        seen.add(start)
        while stack:
            node, it = stack[-1]
            nxt = next((d for d in it if d not in seen and d in deps), None)
            if nxt is None:
                stack.pop()
                out.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(deps.get(nxt, []))))
    return out


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] where each waits on the next, or None. Iterative (deep graphs are fine)."""
    color: dict[str, int] = {}
    for start in deps:
        if color.get(start):
            continue
        path = [start]
        color[start] = 1
        stack = [iter(deps.get(start, []))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                stack.pop()
            elif color.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not color.get(nxt) and nxt in deps:
                color[nxt] = 1
                path.append(nxt)
                stack.append(iter(deps.get(nxt, [])))
    return None


def load_plan(config_path: str) -> Plan:
    """Load, validate and plan a config file (ConfigError on any problem)."""
    from pnr.model.loader import load_domain

    return make_plan(load_domain(config_path, rest=plan_issues), str(config_path))


def check_config(
    config_path: str,
    environ: Mapping[str, str] | None = None,
    shown_as: str | None = None,
    env_files: Sequence[str] = (),
) -> Plan:
    """`load_plan`, and every `${VAR}` of the config resolved in `environ` (default: this process's) over the
    domain's env_files and `env_files` (see `domain_environ`): what `pnr validate` and `pnr up` check before
    anything starts. Errors name the file as `shown_as` (the user's spelling of a path made absolute for another
    process), else as given."""
    try:
        plan = load_plan(config_path)
        values = domain_environ(plan.domain, config_path, environ, env_files)
        for name, chunk in plan.chunks.items():
            expand_env(chunk, plan.refs[name].path, values, source=str(config_path))
    except ConfigError as exc:
        if shown_as is None or exc.source != str(config_path):
            raise
        raise ConfigError(shown_as, exc.issues) from None
    return plan
