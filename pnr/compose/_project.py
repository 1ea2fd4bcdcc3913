"""Reading a compose project as compose does: its files (`-f`, or the default file and its override file),
the project's `.env`, `include`, interpolation, the merge of the files, `extends`, and the project name."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pnr.compose import _template as tpl
from pnr.compose._merge import merge_mappings
from pnr.compose._report import Report
from pnr.compose._schema import validate
from pnr.compose._spec import ComposeSpec, ServiceSpec
from pnr.compose._yaml import YamlDoc, key_path, load_yaml
from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model.envfile import EnvFileError, parse_env_file
from pnr.model.fields import NAME_RE
from pnr.model.loader import read_input
from pnr.records import JsonObject, JsonValue

MAX_COMPOSE_BYTES = 5 * 1024 * 1024
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_PROJECT_CHARS = re.compile(r"[a-z0-9_-]")
REMOTE_CONTEXT = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@|^github\.com/")  # a remote build context
_DEP_KEYS = ("depends_on", "links", "volumes_from")  # keys a base service of `extends` does not pass on


@dataclass
class Project:
    """The merged, interpolated compose model of a project, and what it was read from."""

    folder: Path  # the project folder: the first file's
    files: list[Path]
    data: ComposeSpec = field(default_factory=lambda: ComposeSpec())
    env: dict[str, str] = field(default_factory=dict)  # for interpolation: the .env, under the shell
    dotenv: Path | None = None  # the project's .env, when it exists
    dotenv_keys: frozenset[str] = frozenset()
    name: str = ""
    profiles: tuple[str, ...] = ()


def compose_files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to read: one path (a file, or a folder holding compose.yaml / docker-compose.yml ...) with the
    override file of a default-named file next to it; a sequence of paths (`-f a.yml -f b.yml`) as given."""
    if not isinstance(path, (str, os.PathLike)):
        if not path:
            raise ConfigError("pnr import", [ConfigIssue("", "no compose file given")])
        return [Path(p) for p in path]
    first = Path(path)
    if first.is_dir():
        found = [first / name for name in DEFAULT_FILES if (first / name).is_file()]
        if not found:
            raise ConfigError(
                str(first), [ConfigIssue("", f"no compose file here (looked for {', '.join(DEFAULT_FILES)})")]
            )
        first = found[0]
    if first.name not in DEFAULT_FILES:
        return [first]
    stem = first.name.rsplit(".", 1)[0]
    overrides = [first.parent / f"{stem}.override.{ext}" for ext in ("yaml", "yml")]
    return [first, *[o for o in overrides if o.is_file()][:1]]


def read_project(
    files: list[Path],
    report: Report,
    name: str | None,
    profiles: Iterable[str],
    environ: Mapping[str, str],
) -> Project:
    """Read and merge the files; ConfigError (every issue of the files at once) when they cannot be imported."""
    project = Project(files[0].absolute().parent, files)
    dotenv = _dotenv(project.folder, environ, report)
    project.dotenv = project.folder / ".env" if dotenv is not None else None
    project.dotenv_keys = frozenset((dotenv or {}).keys() - environ.keys())
    project.env = {**(dotenv or {}), **environ}  # the shell wins over .env, as in compose
    data: JsonObject = {}
    for i, path in enumerate(files):
        doc, top = _read_doc(path, report.source if i == 0 else str(path))
        part = _with_includes(_interpolate_doc(top, project.env, report), path.absolute().parent, project, report)
        data = merge_mappings(data, part) if i else part
        if i == 0:
            report.doc = YamlDoc(data, dict(doc.lines))
        else:
            report.doc.add(doc, path.name)
    report.doc.data = data
    report.issues.extend(validate(report.doc))
    report.check()
    project.data = cast(ComposeSpec, data)  # the schema check above holds it to these shapes
    project.name = _project_name(name, project.data, project, report)
    wanted = tuple(profiles) or tuple(p for p in project.env.get("COMPOSE_PROFILES", "").split(",") if p)
    project.profiles = wanted
    return project


def _read_doc(path: Path, source: str) -> tuple[YamlDoc, JsonObject]:
    """The document and its top-level mapping."""
    doc, issues = load_yaml(read_input(path, source, "a compose file", MAX_COMPOSE_BYTES))
    if doc is None:
        raise ConfigError(source, issues)
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        raise ConfigError(source, [ConfigIssue("", f"the top level must be a mapping with 'services', not {kind}")])
    return doc, doc.data


def _dotenv(folder: Path, environ: Mapping[str, str], report: Report) -> dict[str, str] | None:
    """The project's `.env` (in the project folder), as compose reads it; None when there is none."""
    path = folder / ".env"
    if not path.is_file():
        return None
    try:
        lines = parse_env_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, EnvFileError) as exc:
        report.note(".env", f"not read ({exc}); variables come from the environment only")
        return None
    out: dict[str, str] = {}
    for line in lines:
        if line.value is None:
            continue
        if line.literal:
            out[line.key] = line.value
            continue
        try:
            out[line.key] = tpl.resolve(tpl.parse(line.value), {**out, **environ}, [])
        except tpl.TemplateError as exc:
            report.note(".env", f"line {line.line}: {exc}; {line.key} left out")
    return out


def _interpolate_doc(top: JsonObject, env: Mapping[str, str], report: Report) -> JsonObject:
    """A document's top-level mapping, interpolated."""
    return {
        key: value if key.startswith("x-") else _interpolate(value, (key,), env, report) for key, value in top.items()
    }


def _interpolate(node: JsonValue, loc: tuple[str | int, ...], env: Mapping[str, str], report: Report) -> JsonValue:
    """Compose's substitution everywhere except container env (kept for pnr to expand at start)."""
    if isinstance(node, dict):
        return {
            key: value
            if (isinstance(key, str) and key.startswith("x-")) or _is_env_position((*loc, key))
            else _interpolate(value, (*loc, key), env, report)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(item, (*loc, i), env, report) for i, item in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        return _substitute(node, _path(loc), env, report)
    return node


def _substitute(text: str, path: str, env: Mapping[str, str], report: Report) -> str:
    try:
        parts = tpl.parse(text)
        missing: list[str] = []
        value = tpl.resolve(parts, env, missing)
    except tpl.TemplateError as exc:
        report.fail(path, str(exc))
        return text
    if tpl.has_vars(parts):
        names = sorted({p.name for p in parts if isinstance(p, tpl.Var)})
        message = (
            f"{', '.join('${' + n + '}' for n in names)} resolved when importing (pnr expands "
            "variables only in container env, when a run starts); re-import to change the value"
        )
        if missing:
            message += f"; {', '.join(sorted(set(missing)))} unset: replaced by an empty string, as compose does"
        report.note(path, message)
    return value


def _is_env_position(loc: tuple[str | int, ...]) -> bool:
    """Values pnr expands itself (container env) keep their `${VAR}` when interpolating."""
    return len(loc) == 3 and loc[0] == "services" and loc[2] == "environment"


def _path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path = key_path(path, part)
    return path


# -- include -------------------------------------------------------------------------------------------------
_INCLUDED = ("services", "volumes", "networks", "secrets", "configs")


def _with_includes(data: JsonObject, here: Path, project: Project, report: Report) -> JsonObject:
    """`include:`: the services (volumes, networks, secrets, configs) of the included files added to this one's,
    their relative paths rebased onto the project folder. A name defined twice is an error, as in compose."""
    items = data.get("include")
    if not items:
        return data
    out = dict(data)
    for i, item in enumerate(items if isinstance(items, list) else []):
        where = key_path("include", i)
        if not isinstance(item, str | dict):
            report.fail(where, "must be a file path or a mapping with a path")
            continue
        spec: JsonObject = {"path": item} if isinstance(item, str) else item
        for key in ("project_directory", "env_file"):
            if key in spec:
                report.note(key_path(where, key), "not applied: the included file is read with this project's .env")
        paths = spec.get("path")
        for sub in [paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []:
            included = (here / str(sub)).resolve()
            try:
                _doc, top = _read_doc(included, str(included))
            except ConfigError as exc:
                report.fail(where, "; ".join(issue.render(str(sub)) for issue in exc.issues))
                continue
            part = _with_includes(_interpolate_doc(top, project.env, report), included.parent, project, report)
            _rebase(part, included.parent, project.folder)
            _add_included(out, part, where, str(sub), report)
            report.note(where, f"{sub}: its services are imported with this file's")
    out.pop("include", None)
    return out


def _add_included(out: JsonObject, part: JsonObject, where: str, sub: str, report: Report) -> None:
    """The services (volumes, networks, secrets, configs) of an included file added to `out`'s."""
    for key in _INCLUDED:
        section, current = part.get(key), out.get(key)
        if not isinstance(section, dict | None) or not isinstance(current, dict | None):
            report.fail(where, f"{key} must be a mapping, here and in {sub!r}")
            continue
        mine = dict(current or {})
        for name, value in (section or {}).items():
            if name in mine:
                report.fail(where, f"{key[:-1]} {name!r} of {sub!r} is also defined here")
                continue
            mine[name] = value
        if section:
            out[key] = mine


def _mapping(value: JsonValue) -> JsonObject:
    """A mapping of the document, or {} for a key that is absent (or not a mapping: the schema check says so)."""
    return value if isinstance(value, dict) else {}


def _rebase(data: JsonObject, folder: Path, project_folder: Path) -> None:
    """Relative host paths of an included file (build contexts, bind mounts, env files, file secrets/configs)
    made relative to the project folder, where the rest of the import reads them from."""

    def move(text: str) -> str:
        if text.startswith(("/", "~")) or REMOTE_CONTEXT.match(text):
            return text
        moved = os.path.relpath(folder / text, project_folder)
        return moved if moved.startswith(".") else f"./{moved}"

    for svc in _mapping(data.get("services")).values():
        if isinstance(svc, dict):
            _rebase_service(svc, move)
    for key in ("secrets", "configs"):
        for spec in _mapping(data.get(key)).values():
            if isinstance(spec, dict) and spec.get("file"):
                spec["file"] = move(str(spec["file"]))


def _rebase_service(svc: JsonObject, move: Callable[[str], str]) -> None:
    build = svc.get("build")
    if isinstance(build, str):
        svc["build"] = move(build)
    elif isinstance(build, dict):
        build["context"] = move(str(build.get("context") or "."))
    for key in ("env_file", "label_file"):
        value = svc.get(key)
        if isinstance(value, str):
            svc[key] = move(value)
        elif isinstance(value, list):
            svc[key] = [_rebase_file(v, move) for v in value]
    volumes = svc.get("volumes")
    if volumes and isinstance(volumes, list):
        svc["volumes"] = [_rebase_volume(v, move) for v in volumes]


def _rebase_file(item: JsonValue, move: Callable[[str], str]) -> JsonValue:
    if isinstance(item, str):
        return move(item)
    return {**item, "path": move(str(item["path"]))} if isinstance(item, dict) else item


def _rebase_volume(item: JsonValue, move: Callable[[str], str]) -> JsonValue:
    if isinstance(item, str):
        source, sep, rest = item.partition(":")
        return f"{move(source)}{sep}{rest}" if sep and source.startswith(".") else item
    if isinstance(item, dict) and item.get("type") == "bind" and str(item.get("source", "")).startswith("."):
        return {**item, "source": move(str(item["source"]))}
    return item


# -- project name -------------------------------------------------------------------------------------------------
def normalize_project(name: str) -> str:
    """Compose's project name normalization: lower case, only [a-z0-9_-], no leading '_' or '-'."""
    return "".join(_PROJECT_CHARS.findall(name.lower())).lstrip("_-")


def _project_name(name: str | None, data: ComposeSpec, project: Project, report: Report) -> str:
    """As compose: --name (pnr's -p), else COMPOSE_PROJECT_NAME (the shell, then .env), else `name:`, else the
    project folder's name; normalized as compose does; at most 63 characters (pnr's names)."""
    where = ""
    if name is not None:
        if normalize_project(name) != name:
            report.fail(
                "",
                f"--name {name!r} is not a valid project name: use lower-case letters, digits, '_' and '-', "
                "starting with a letter or a digit",
            )
        project_name, origin = name, "--name"
    elif project.env.get("COMPOSE_PROJECT_NAME"):
        origin = "COMPOSE_PROJECT_NAME"
        project_name = normalize_project(project.env["COMPOSE_PROJECT_NAME"])
    elif data.get("name"):
        project_name, origin, where = normalize_project(str(data["name"])), "name:", "name"
    else:
        project_name, origin = normalize_project(project.folder.name), f"the folder name {project.folder.name!r}"
    if not project_name:
        report.fail(where, f"{origin} gives no valid project name; give --name")
    elif not NAME_RE.match(project_name):
        report.fail(
            where, f"project name {project_name!r} (from {origin}) is longer than 63 characters; give a shorter --name"
        )
    report.check()
    return project_name


# -- extends ----------------------------------------------------------------------------------------------------
def resolve_extends(services: dict[str, JsonValue], report: Report) -> dict[str, ServiceSpec]:
    """Every service with its `extends` base merged in (the compose merge rules)."""
    resolved: dict[str, JsonObject] = {}
    for name in services:
        _extended(name, (), services, resolved, report)
    # each service passed the schema check, and the merge of two valid services is one
    return {name: cast(ServiceSpec, svc) for name, svc in resolved.items()}


def _extended(
    name: str, chain: tuple[str, ...], services: dict[str, JsonValue], resolved: dict[str, JsonObject], report: Report
) -> JsonObject:
    if name in resolved:
        return resolved[name]
    svc = dict(_mapping(services[name]))
    ext = svc.pop("extends", None)
    path = key_path(key_path("services", name), "extends")
    base_name = None if ext is None else str(ext.get("service")) if isinstance(ext, dict) else str(ext)
    if base_name is None:
        pass
    elif isinstance(ext, dict) and "file" in ext:
        report.fail(
            key_path(path, "file"),
            "extends from another file is not supported by pnr import; copy the base service here",
        )
    elif base_name not in services:
        report.fail(path, f"extends undefined service {base_name!r}{did_you_mean(base_name, services)}")
    elif base_name in (*chain, name):
        report.fail(path, f"extends cycle: {' → '.join((*chain, name, base_name))}")
    else:
        base = _extended(base_name, (*chain, name), services, resolved, report)
        dropped = [k for k in _DEP_KEYS if k in base]
        if dropped:
            report.note(path, f"{', '.join(dropped)} of {base_name!r} not inherited (not allowed in a base)")
        svc = merge_mappings({k: v for k, v in base.items() if k not in _DEP_KEYS}, svc)
        report.note(path, f"merged with service {base_name!r} when importing")
    resolved[name] = svc
    return svc


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
