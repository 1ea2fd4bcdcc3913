"""`pnr import`: a docker-compose project as a pnr domain config.

One CPUX named after the project; one design chunk per service (chunk name = service name); `depends_on`
becomes gatekeeper signals so that pnr starts services in compose's order (see `pnr.compose._gates`).
The steps, one module each: read and merge the project (`_project`: files, `.env`, `include`, `extends`,
project name), the dependency graph (`_graph`), gates and probes (`_gates`), the per-key value rules
(`_container`, `_values`, `_ports`, `_mounts`). Whatever pnr cannot express is reported as a `Note` (path in the
compose file, what pnr does instead); a project pnr cannot import raises `ConfigError` with every problem found.
The generated domain is checked by pnr's own model (load and plan) before it is returned.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pnr.compose import _gates, _graph
from pnr.compose._mounts import volume_names
from pnr.compose._project import Project, compose_files, read_project, resolve_extends
from pnr.compose._report import Context, Note, Report
from pnr.compose._spec import ComposeSpec, DomainDoc, ServiceSpec
from pnr.compose._yaml import key_path
from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model.fields import check_name

__all__ = ["ImportResult", "Note", "import_compose"]

ComposePaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass
class ImportResult:
    """A pnr domain config (a JSON-able dict that `pnr.parse_domain` accepts) and the notes of the import."""

    domain: DomainDoc
    notes: list[Note] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the compose files read, in merge order

    @property
    def project(self) -> str:
        return str(self.domain["name"])

    def to_json(self) -> str:
        """The domain as JSON, indented like pnr's own configs (short objects and lists on one line)."""
        return _dumps(self.domain, 0, 0) + "\n"


def import_compose(
    path: ComposePaths,
    name: str | None = None,
    *,
    profiles: Iterable[str] = (),
    output_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    started_signals: bool = True,
) -> ImportResult:
    """Translate a compose project into a pnr domain config.

    `path`: a compose file or a folder (read with its override file, `compose.override.yaml` /
    `docker-compose.override.yml`, as compose does), or a list of files merged in order (`-f a.yml -f b.yml`).
    `name`: the project (domain, CPUX) name; default as compose: `COMPOSE_PROJECT_NAME`, else the file's `name:`,
    else the project folder's name, normalized. `profiles`: enabled compose profiles (`"*"`: all; default
    `COMPOSE_PROFILES`). `output_dir`: where the domain file will be written — relative bind mounts, build contexts
    and the `.env` are written relative to it (default: the project folder). `environ`: the shell's variables
    (default `os.environ`; they win over the project's `.env`). `started_signals`: give a chunk with a probe an
    `on_start` signal for dependents that wait with `service_started` (exact compose order; False: gate them on
    the chunk's readiness instead).

    Raises ConfigError (naming the file and each path, every problem at once) for invalid YAML, schema
    violations, unknown services in `depends_on`, dependency cycles and anything else pnr cannot run.
    """
    files = compose_files(path)
    report = Report(str(files[0]))
    shell = dict(os.environ if environ is None else environ)
    project = read_project(files, report, name, profiles, shell)
    folder = project.folder
    out_dir = Path(output_dir).absolute() if output_dir is not None else folder
    ctx = Context(report, folder, out_dir, project.name, project.env, project.dotenv_keys)
    domain = _domain(ctx, project, started_signals)
    report.check()
    _check_with_model(report, domain)
    return ImportResult(domain, report.sorted_notes(), files)


def _domain(ctx: Context, project: Project, started_signals: bool) -> DomainDoc:
    """The domain config of the project; problems are collected in `ctx.report`, not raised."""
    data = project.data
    services = resolve_extends(data.get("services") or {}, ctx.report)
    _check_service_names(ctx, services)
    deps = {name: _graph.deps_of(ctx, name, svc) for name, svc in services.items()}
    _graph.check_graph(ctx, services, deps)
    active = _graph.select(ctx, services, deps, project.profiles)
    roles = _gates.roles(ctx, services, active, started_signals)
    volumes = volume_names(ctx, data)
    chunks = [
        _gates.chunk(ctx, name, services[name], active[name], roles, data, volumes)
        for name in _graph.topological(active)
        if name in roles
    ]
    _top_level_notes(ctx, data)
    domain: DomainDoc = {"name": project.name}
    if project.dotenv is not None:
        domain["env_files"] = [_relative(project.dotenv, ctx.out_dir)]
        ctx.note(
            ".env",
            "in the domain's env_files: pnr up takes ${VAR} values from it (the environment wins, as in compose)",
        )
    domain["cpuxs"] = {project.name: {"design_chunks": chunks}}
    return domain


def _check_service_names(ctx: Context, services: dict[str, ServiceSpec]) -> None:
    for name in services:
        try:
            check_name(name)
        except ValueError as exc:
            ctx.fail(key_path("services", name), f"cannot be a pnr chunk name: {exc}")
    if not services:
        ctx.fail("services", "no services: a pnr domain needs at least one")


def _relative(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return str(path)


_CHUNK_PATH = re.compile(r"^cpuxs\.[^.]+\.design_chunks\[(\d+)\]\.?")


def _check_with_model(report: Report, domain: DomainDoc) -> None:
    """Load and plan the generated domain as `pnr validate` would: an import never writes a config pnr refuses.
    A problem is reported at the service it comes from."""
    from pnr.model import make_plan, parse_domain

    try:
        make_plan(parse_domain(json.loads(json.dumps(domain)), report.source), report.source)
    except ConfigError as exc:
        chunks = [c["name"] for cpux in domain["cpuxs"].values() for c in cpux["design_chunks"]]
        issues = []
        for issue in exc.issues:
            m = _CHUNK_PATH.match(issue.path)
            where = key_path("services", chunks[int(m.group(1))]) if m and int(m.group(1)) < len(chunks) else ""
            inner = issue.path[m.end() :] if m else issue.path
            issues.append(ConfigIssue(where, f"pnr's model refuses the generated {inner or 'domain'}: {issue.message}"))
        raise ConfigError(report.source, issues) from None


def _top_level_notes(ctx: Context, data: ComposeSpec) -> None:
    """Notes for the top-level keys pnr treats differently."""
    if "version" in data:
        ctx.note("version", "obsolete: ignored, as compose v2 ignores it")
    if data.get("models"):
        ctx.note("models", "not supported: pnr provides no AI models")
    for key in data.get("networks") or {}:
        ctx.note(
            key_path("networks", key),
            f"not created: every chunk joins one network, pnr_{ctx.project}, where chunk and container names resolve",
        )
    for key, spec in (data.get("volumes") or {}).items():
        path = key_path("volumes", key)
        for sub in ("driver", "driver_opts", "labels"):
            if (spec or {}).get(sub):
                ctx.note(
                    key_path(path, sub),
                    "not applied: pnr creates volumes with the local driver and its own labels",
                )
        if (spec or {}).get("external") not in (None, False, "false"):
            ctx.note(
                key_path(path, "external"),
                "pnr creates the volume if it is missing (compose refuses to start)",
            )


def _dumps(value: object, indent: int, used: int, width: int = 110) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or indent + used + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            head = json.dumps(key, ensure_ascii=False) + ": "
            items.append(pad + head + _dumps(item, indent + 2, len(head), width))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(pad + _dumps(item, indent + 2, 0, width) for item in value) + "\n" + " " * indent + "]"
