"""`pnr import`: a docker-compose file as a pnr domain config.

One CPUX named after the project; one design chunk per service (chunk name = service name); `depends_on`
becomes gatekeeper signals so that pnr starts services in compose's order:

    service_started                 → the dependency's `<svc>_started` (written once its container runs)
    service_healthy                 → `<svc>_healthy` (its healthcheck, as a probe, wrote Y)
    service_completed_successfully  → `<svc>_completed` (the dependency is a job chunk that exited 0)

A service nothing depends on gates on `system_ready`. Whatever pnr cannot express is reported as a `Note`
(path in the compose file, what pnr does instead); a file pnr cannot import raises `ConfigError`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pnr.compose import _template as tpl
from pnr.compose._envfile import EnvFileError, EnvLine, parse_env_file
from pnr.compose._schema import validate
from pnr.compose._yaml import YamlDoc, key_path, load_yaml
from pnr.compose.keys import DEFAULT_VALUES, SERVICE_KEYS
from pnr.exceptions import ConfigError, ConfigIssue

MAX_COMPOSE_BYTES = 5 * 1024 * 1024
# a port item: container ports, host ports (None: a random one), host address, protocol
_PortSpec = tuple[list[int] | None, list[int] | None, str | None, str]
STARTED, HEALTHY, COMPLETED = "service_started", "service_healthy", "service_completed_successfully"
_SUFFIX = {STARTED: "started", HEALTHY: "healthy", COMPLETED: "completed"}
_PROMPT = {STARTED: "has {} started?", HEALTHY: "is {} healthy?", COMPLETED: "has {} completed successfully?"}
SYSTEM_READY = "system_ready"
# compose's defaults (docker run's): a healthcheck without timing
HC_INTERVAL, HC_TIMEOUT, HC_RETRIES = 30.0, 30.0, 3
MAX_SECONDS = 86_400.0  # pnr's bound on every duration
MAX_STOP_GRACE = 3600.0  # pnr's bound on stop_grace_period_seconds
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # pnr's names (chunks, containers, domains)
_PROJECT_CHARS = re.compile(r"[a-z0-9_-]")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_DEP_KEYS = ("depends_on", "links", "volumes_from")  # keys a base service of `extends` may not pass on
_REPLACED_LISTS = ("command", "entrypoint", "test")  # extends: an override replaces these lists
_MAPPING_LISTS = ("environment", "labels", "annotations", "args", "sysctls")  # list_or_dict keys


@dataclass(frozen=True)
class Note:
    """Something in the compose file that pnr does differently or not at all, and what pnr does instead."""

    path: str  # where in the compose file, e.g. "services.web.deploy.resources"
    message: str

    def render(self, source: str = "") -> str:
        where = ": ".join(p for p in (source, self.path) if p)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class ImportResult:
    """A pnr domain config (a JSON-able dict that `pnr.parse_domain` accepts) and the notes of the import."""

    domain: dict[str, Any]
    notes: list[Note] = field(default_factory=list)

    @property
    def project(self) -> str:
        return str(self.domain["name"])

    def to_json(self) -> str:
        """The domain as JSON, indented like pnr's own configs (short objects and lists on one line)."""
        return _dumps(self.domain, 0, 0) + "\n"


def import_compose(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    profiles: Iterable[str] = (),
    output_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    started_signals: bool = True,
) -> ImportResult:
    """Translate the compose file at `path` into a pnr domain config.

    `name`: the project (domain, CPUX) name; default the file's `name:`, else its directory's name, normalized
    as compose does. `profiles`: enabled compose profiles (`"*"`: all). `output_dir`: where the domain file
    will be written — relative bind mounts and build contexts are rewritten relative to it (default: the
    compose file's directory). `environ`: the variables compose would interpolate (default `os.environ`, over
    the project's `.env`). `started_signals`: give a chunk with a probe an `on_start` signal for dependents
    that wait with `service_started` (exact compose order; False: gate them on the chunk's readiness instead).

    Raises ConfigError (naming the file and each path) for invalid YAML, schema violations, unknown services
    in `depends_on`, dependency cycles and anything else pnr cannot run.
    """
    return _Importer(Path(path), name, tuple(profiles), output_dir, environ, started_signals).run()


@dataclass
class _Dep:
    condition: str
    path: str
    required: bool = True
    restart: bool = False
    implicit: str | None = None  # the key that implies the dependency (links, volumes_from, network_mode, ...)


@dataclass
class _Role:
    kind: str  # "plain" (ready when running), "probe" (ready when its healthcheck passes), "job"
    check: dict[str, Any] | None = None
    on_start: bool = False  # with started_signals: writes <svc>_started when its container runs

    def final(self, service: str) -> str:
        suffix = {"plain": "started", "probe": "healthy", "job": "completed"}[self.kind]
        return f"{service}_{suffix}"


class _Importer:
    def __init__(
        self,
        path: Path,
        name: str | None,
        profiles: tuple[str, ...],
        output_dir: str | os.PathLike[str] | None,
        environ: Mapping[str, str] | None,
        started_signals: bool,
    ) -> None:
        self.path = path
        self.source = str(path)
        self.dir = path.absolute().parent
        self.out_dir = Path(output_dir).absolute() if output_dir is not None else self.dir
        self.name = name
        self.profiles = profiles
        self.environ = dict(os.environ if environ is None else environ)
        self.started_signals = started_signals
        self.notes: list[Note] = []
        self.issues: list[ConfigIssue] = []
        self.doc = YamlDoc(None)
        self.env: dict[str, str] = {}
        self.project = ""

    # -- bookkeeping ---------------------------------------------------------------------------------
    def note(self, path: str, message: str) -> None:
        self.notes.append(Note(path, message))

    def fail(self, path: str, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def check(self) -> None:
        if self.issues:
            raise ConfigError(self.source, self.issues)

    # -- the steps -----------------------------------------------------------------------------------
    def run(self) -> ImportResult:
        doc, issues = load_yaml(self._read())
        if doc is None:
            raise ConfigError(self.source, issues)
        self.doc = doc
        if not isinstance(doc.data, dict):
            kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
            raise ConfigError(
                self.source, [ConfigIssue("", f"the top level must be a mapping with 'services', not {kind}")]
            )
        self.env = {**self._dotenv(), **self.environ}  # the shell wins over .env, as in compose
        data: dict[str, Any] = self._interpolate(doc.data, ())
        self.check()
        self.issues.extend(validate(YamlDoc(data, doc.lines)))
        self.check()
        self.project = self._project_name(data)
        services = self._resolve_extends(data.get("services") or {})
        self.check()
        deps = {name: self._deps_of(name, svc) for name, svc in services.items()}
        self._check_graph(services, deps)
        self.check()
        active = self._select(services, deps)
        self.check()
        roles = self._roles(services, active)
        self.check()
        volume_names = self._volume_names(data)
        chunks = [
            self._chunk(name, services[name], active[name], roles, data, volume_names) for name in _topological(active)
        ]
        self._top_level_notes(data)
        self.check()
        self.notes.sort(key=lambda note: self.doc.line_of(note.path) or 1 << 30)  # file order (stable)
        domain = {"name": self.project, "cpuxs": {self.project: {"design_chunks": chunks}}}
        return ImportResult(domain, self.notes)

    def _read(self) -> str:
        try:
            if self.path.is_dir():
                raise ConfigError(self.source, [ConfigIssue("", "is a directory; give a compose file")])
            size = self.path.stat().st_size
            if size > MAX_COMPOSE_BYTES:
                raise ConfigError(
                    self.source,
                    [ConfigIssue("", f"is {size} bytes; files larger than {MAX_COMPOSE_BYTES} are refused")],
                )
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(self.source, [ConfigIssue("", "file not found")]) from None
        except OSError as exc:
            raise ConfigError(self.source, [ConfigIssue("", f"cannot read: {exc.strerror}")]) from None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(self.source, [ConfigIssue("", f"not UTF-8 text (byte {exc.start})")]) from None

    def _dotenv(self) -> dict[str, str]:
        """The project's `.env` (next to the compose file): values for interpolation, as compose reads it."""
        path = self.dir / ".env"
        if not path.is_file():
            return {}
        try:
            lines = parse_env_file(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, EnvFileError) as exc:
            self.note(".env", f"not read ({exc}); variables come from the environment only")
            return {}
        out: dict[str, str] = {}
        for line in lines:
            if line.value is None:
                continue
            if line.literal:
                out[line.key] = line.value
            else:
                try:
                    out[line.key] = tpl.resolve(tpl.parse(line.value), {**self.environ, **out}, [])
                except tpl.TemplateError as exc:
                    self.note(".env", f"line {line.line}: {exc}; {line.key} left out")
        return out

    # -- interpolation ---------------------------------------------------------------------------------
    def _interpolate(self, node: Any, loc: tuple[str | int, ...]) -> Any:
        """Compose's substitution everywhere except container env (kept for pnr to expand at start)."""
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                sub = (*loc, key)
                if (isinstance(key, str) and key.startswith("x-")) or _is_env_position(sub):
                    out[key] = value
                else:
                    out[key] = self._interpolate(value, sub)
            return out
        if isinstance(node, list):
            return [self._interpolate(item, (*loc, i)) for i, item in enumerate(node)]
        if isinstance(node, str) and "$" in node:
            path = _path(loc)
            try:
                parts = tpl.parse(node)
                missing: list[str] = []
                value = tpl.resolve(parts, self.env, missing)
            except tpl.TemplateError as exc:
                self.fail(path, str(exc))
                return node
            if tpl.has_vars(parts):
                names = sorted({p.name for p in parts if isinstance(p, tpl.Var)})
                message = (
                    f"{', '.join('${' + n + '}' for n in names)} resolved when importing (pnr expands "
                    "variables only in container env, when a run starts); re-import to change the value"
                )
                if missing:
                    unset = ", ".join(sorted(set(missing)))
                    message += f"; {unset} unset: replaced by an empty string, as compose does"
                self.note(path, message)
            return value
        return node

    # -- project, services, dependencies ---------------------------------------------------------------
    def _project_name(self, data: dict[str, Any]) -> str:
        if self.name is not None:
            if _normalize_project(self.name) != self.name:
                self.fail(
                    "",
                    f"--name {self.name!r} is not a valid project name: use lower-case letters, digits, "
                    "'_' and '-', starting with a letter or a digit",
                )
            project = self.name
        elif data.get("name"):
            project = _normalize_project(str(data["name"]))
            if not project:
                self.fail("name", f"{data['name']!r} gives no valid project name; give --name")
        else:
            project = _normalize_project(self.dir.name)
            if not project:
                self.fail("", f"no project name can be made from the directory name {self.dir.name!r}; give --name")
        if len(project) > 63:
            self.fail(
                "name" if data.get("name") and self.name is None else "",
                f"project name {project!r} is longer than 63 characters (pnr's limit); give a shorter --name",
            )
        self.check()
        return project

    def _resolve_extends(self, services: dict[str, Any]) -> dict[str, dict[str, Any]]:
        resolved: dict[str, dict[str, Any]] = {}

        def get(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
            if name in resolved:
                return resolved[name]
            svc = dict(services[name] or {})
            ext = svc.pop("extends", None)
            path = key_path(key_path("services", name), "extends")
            if ext is None:
                resolved[name] = svc
                return svc
            base_name = ext if isinstance(ext, str) else str(ext.get("service"))
            if isinstance(ext, dict) and "file" in ext:
                self.fail(
                    key_path(path, "file"),
                    "extends from another file is not supported by pnr import; copy the base service here",
                )
            elif base_name not in services:
                self.fail(path, f"extends undefined service {base_name!r}{_did_you_mean(base_name, services)}")
            elif base_name in (*chain, name):
                self.fail(path, f"extends cycle: {' → '.join((*chain, name, base_name))}")
            else:
                base = get(base_name, (*chain, name))
                dropped = [k for k in _DEP_KEYS if k in base]
                if dropped:
                    self.note(
                        path,
                        f"{', '.join(dropped)} of {base_name!r} not inherited (not allowed in a base)",
                    )
                svc = _merge({k: v for k, v in base.items() if k not in _DEP_KEYS}, svc, "")
                self.note(path, f"merged with service {base_name!r} when importing")
            resolved[name] = svc
            return svc

        for name in services:
            get(name, ())
        for name in services:
            if not _NAME_RE.match(name):
                self.fail(
                    key_path("services", name),
                    f"service name {name!r} cannot be a pnr chunk name: use 1-63 "
                    "letters, digits, '_', '.' or '-', starting with a letter or digit",
                )
        if not services:
            self.fail("services", "no services: a pnr domain needs at least one")
        return resolved

    def _deps_of(self, name: str, svc: dict[str, Any]) -> dict[str, _Dep]:
        base = key_path("services", name)
        out: dict[str, _Dep] = {}
        depends = svc.get("depends_on")
        dpath = key_path(base, "depends_on")
        if isinstance(depends, list):
            for i, dep in enumerate(depends):
                out[dep] = _Dep(STARTED, key_path(dpath, i))
        elif isinstance(depends, dict):
            for dep, spec in depends.items():
                path = key_path(dpath, dep)
                out[dep] = _Dep(
                    spec["condition"],
                    path,
                    self._bool(spec.get("required", True), key_path(path, "required")),
                    self._bool(spec.get("restart", False), key_path(path, "restart")),
                )
        for i, link in enumerate(svc.get("links") or []):
            out.setdefault(link.split(":")[0], _Dep(STARTED, key_path(key_path(base, "links"), i), implicit="links"))
        for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
            value = svc.get(key)
            if isinstance(value, str) and value.startswith("service:"):
                out.setdefault(value.removeprefix("service:"), _Dep(STARTED, key_path(base, key), implicit=key))
        for i, item in enumerate(svc.get("volumes_from") or []):
            if not item.startswith("container:"):
                path = key_path(key_path(base, "volumes_from"), i)
                out.setdefault(item.split(":")[0], _Dep(STARTED, path, implicit="volumes_from"))
        return out

    def _check_graph(self, services: dict[str, Any], deps: dict[str, dict[str, _Dep]]) -> None:
        for name, mine in deps.items():
            for dep, spec in mine.items():
                if dep not in services:
                    self.fail(
                        spec.path,
                        f"{name!r} depends on undefined service {dep!r}{_did_you_mean(dep, services)}",
                    )
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        stack: list[str] = []
        reported: set[frozenset[str]] = set()

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for dep, spec in deps.get(node, {}).items():
                if dep not in services:
                    continue
                if state.get(dep) == 1:
                    cycle = [*stack[stack.index(dep) :], dep]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self.fail(spec.path, f"dependency cycle: {' → '.join(cycle)}")
                elif dep not in state:
                    visit(dep)
            stack.pop()
            state[node] = 2

        for name in services:
            if name not in state:
                visit(name)

    def _select(
        self, services: dict[str, dict[str, Any]], deps: dict[str, dict[str, _Dep]]
    ) -> dict[str, dict[str, _Dep]]:
        """The services of the enabled profiles, each with the dependencies pnr gates it on."""
        wanted = set(self.profiles)
        enabled = {}
        for name, svc in services.items():
            profiles = svc.get("profiles") or []
            if not profiles or "*" in wanted or wanted & set(profiles):
                enabled[name] = svc
            else:
                self.note(
                    key_path(key_path("services", name), "profiles"),
                    f"not imported: none of its profiles ({', '.join(profiles)}) is enabled "
                    f"(import with --profile {profiles[0]})",
                )
        if not enabled and services:
            self.fail(
                "services",
                "no service left to import: every service is in a profile not enabled; give --profile",
            )
        active: dict[str, dict[str, _Dep]] = {}
        for name in enabled:
            active[name] = {}
            for dep, spec in deps[name].items():
                if dep in enabled:
                    active[name][dep] = spec
                    if not spec.required:
                        self.note(
                            key_path(spec.path, "required"),
                            f"pnr waits for {dep!r} like for a required dependency: if {dep!r} fails, "
                            f"{name!r} does not start (compose would start it anyway)",
                        )
                    if spec.restart and spec.implicit is None:
                        self.note(
                            key_path(spec.path, "restart"),
                            f"pnr does not restart {name!r} when {dep!r} is restarted by hand; in watch mode "
                            "(pnr up --watch) the closest is on_dependency_lost: restart",
                        )
                    continue
                profiles = ", ".join(services[dep].get("profiles") or [])
                if spec.required:
                    self.fail(
                        spec.path,
                        f"{name!r} needs {dep!r}, which is only in profiles not enabled ({profiles}): "
                        f"enable one with --profile, or set required: false",
                    )
                else:
                    self.note(
                        spec.path,
                        f"{dep!r} is not imported (profiles {profiles} not enabled) and "
                        f"required is false: {name!r} does not wait for it",
                    )
            for dep, spec in active[name].items():
                if spec.implicit:
                    self.note(
                        spec.path,
                        f"{name!r} starts after {dep!r} has started (implied by {spec.implicit})",
                    )
        return active

    # -- roles: what each chunk promises ---------------------------------------------------------------
    def _roles(self, services: dict[str, dict[str, Any]], active: dict[str, dict[str, _Dep]]) -> dict[str, _Role]:
        waits: dict[str, dict[str, list[str]]] = {name: {} for name in active}
        for name, mine in active.items():
            for dep, spec in mine.items():
                waits[dep].setdefault(spec.condition, []).append(name)
        roles: dict[str, _Role] = {}
        for name in active:
            svc = services[name]
            wanted = waits[name]
            hc_path = key_path(key_path("services", name), "healthcheck")
            check, disabled = self._probe(name, svc)
            if COMPLETED in wanted:
                roles[name] = _Role("job", on_start=self.started_signals and STARTED in wanted)
                if "healthcheck" in svc and not disabled:
                    self.note(
                        hc_path,
                        f"not probed: {', '.join(wanted[COMPLETED])} wait(s) for {name!r} to complete "
                        "successfully, so it is a job chunk (done when it exits 0), and a job takes no "
                        "health check",
                    )
            elif HEALTHY in wanted:
                if check is None:
                    for dependent in wanted[HEALTHY] if disabled else ():  # else: its test was reported
                        self.fail(
                            active[dependent][name].path,
                            f"{dependent!r} waits for {name!r} to be healthy, but its healthcheck is off",
                        )
                    continue
                roles[name] = _Role("probe", check, on_start=self.started_signals and STARTED in wanted)
            elif check is not None and "healthcheck" in svc and (STARTED not in wanted or self.started_signals):
                roles[name] = _Role("probe", check, on_start=STARTED in wanted)
            else:
                roles[name] = _Role("plain")
                if check is not None and "healthcheck" in svc:
                    self.note(
                        hc_path,
                        f"not probed: {', '.join(wanted[STARTED])} wait(s) for {name!r} with "
                        "service_started, and pnr writes a chunk's signals only once its probe passes, "
                        "so a probe would delay them; pnr treats it as ready once it runs",
                    )
        return roles

    def _probe(self, name: str, svc: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        """The probe for a healthcheck (None, True when it is disabled). Without `healthcheck` at all: a
        `docker` probe of the image's own HEALTHCHECK, which compose's service_healthy waits on too."""
        path = key_path(key_path("services", name), "healthcheck")
        hc = svc.get("healthcheck")
        if hc is None:
            return _timing(
                {"type": "docker", "interval_seconds": 0.5},
                HC_INTERVAL,
                HC_TIMEOUT,
                HC_RETRIES,
                0.0,
                threshold=False,
            ), False
        if self._bool(hc.get("disable", False), key_path(path, "disable")):
            return None, True
        test = hc.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        check: dict[str, Any]
        if not test:
            check = {"type": "docker", "interval_seconds": 0.5}
            self.note(
                path,
                "no test: pnr waits for the image's own HEALTHCHECK (a docker probe); this timing bounds "
                "pnr's wait, while the engine runs the image's check with the image's timing",
            )
        elif test[0] == "NONE":
            return None, True
        elif test[0] == "CMD" and len(test) > 1:
            check = {"type": "exec", "command": list(test[1:])}
        elif test[0] == "CMD-SHELL" and len(test) > 1:
            check = {"type": "exec", "command": ["sh", "-c", " ".join(test[1:])]}
        else:
            self.fail(
                key_path(path, "test"),
                "healthcheck.test must be a command string, or a list starting with "
                '"CMD" or "CMD-SHELL" and a command, or ["NONE"]',
            )
            return None, False
        interval = self._duration(hc.get("interval"), key_path(path, "interval")) or HC_INTERVAL
        timeout = self._duration(hc.get("timeout"), key_path(path, "timeout")) or HC_TIMEOUT
        start_period = self._duration(hc.get("start_period"), key_path(path, "start_period")) or 0.0
        retries = self._int(hc.get("retries", HC_RETRIES), key_path(path, "retries")) or HC_RETRIES
        if "start_interval" in hc:
            self.note(
                key_path(path, "start_interval"),
                f"not applied: pnr probes at one interval ({interval:g}s), also during the start period",
            )
        if check["type"] == "exec":
            check["interval_seconds"] = min(interval, MAX_SECONDS)
        return _timing(check, interval, timeout, retries, start_period, threshold=check["type"] == "exec"), False

    # -- one chunk ---------------------------------------------------------------------------------------
    def _chunk(
        self,
        name: str,
        svc: dict[str, Any],
        deps: dict[str, _Dep],
        roles: dict[str, _Role],
        data: dict[str, Any],
        volume_names: dict[str, str],
    ) -> dict[str, Any]:
        role = roles[name]
        gate: dict[str, Any] = {}
        for dep, spec in deps.items():
            signal = self._gate_signal(name, dep, spec, roles[dep])
            gate[signal] = _pnr(_prompt_of(signal))
        if not gate:
            gate[SYSTEM_READY] = _pnr("is system ready?")
        final = role.final(name)
        chunk: dict[str, Any] = {"name": name}
        if role.kind == "job":
            chunk["kind"] = "job"
        chunk["gatekeeper"] = gate
        chunk["flowout"] = {final: _pnr(_prompt_of(final))}
        if role.on_start:
            started = f"{name}_started"
            chunk["on_start"] = {started: _pnr(_prompt_of(started))}
        if role.kind == "probe" and role.check is not None:
            chunk["health_check"] = {
                **role.check,
                "status_mapping": {
                    "success": {"key": final, "response": ["yes"], "tv": "Y"},
                    "failure": {"key": final, "response": ["no"], "tv": "N"},
                },
            }
        chunk["container"] = self._container(name, svc, data, volume_names)
        self._unsupported(name, svc)
        for i, link in enumerate(svc.get("links") or []):
            target, _, alias = link.partition(":")
            if alias and alias != target:
                self.note(
                    key_path(key_path(key_path("services", name), "links"), i),
                    f"alias {alias!r} not created: reach {target!r} by its chunk name {target!r}",
                )
        return chunk

    def _gate_signal(self, name: str, dep: str, spec: _Dep, role: _Role) -> str:
        """The signal `name` waits on for `dep`: exactly compose's condition where pnr can express it, else
        the next stricter one (with a note)."""
        if spec.condition == COMPLETED or role.kind == "plain":
            return role.final(dep)
        if spec.condition == STARTED:
            if role.on_start:
                return f"{dep}_started"
            why = (
                "runs as a job (another service waits for it to complete successfully)"
                if role.kind == "job"
                else "has a readiness probe (another service waits for it with service_healthy)"
            )
            waits_for = "has completed successfully" if role.kind == "job" else "is healthy"
            self.note(
                spec.path,
                f"service_started: {dep!r} {why}, and pnr writes a chunk's signals only once it is "
                f"ready, so {name!r} starts when {dep!r} {waits_for} — later than compose would. "
                "Exact compose order needs pnr to write a signal when a container starts "
                "(on_start, see docs/compose.md)",
            )
            return role.final(dep)
        if role.kind == "job":  # service_healthy on a service that also runs as a job
            self.note(
                spec.path,
                f"service_healthy: {dep!r} runs as a job (another service waits for it to complete "
                f"successfully), so {name!r} starts once it has exited 0",
            )
        return role.final(dep)

    def _container(
        self, name: str, svc: dict[str, Any], data: dict[str, Any], volume_names: dict[str, str]
    ) -> dict[str, Any]:
        base = key_path("services", name)
        cname = svc.get("container_name") or f"{self.project}-{name}-1"
        if not _NAME_RE.match(cname) or len(cname) < 2:
            where = key_path(base, "container_name") if "container_name" in svc else base
            self.fail(
                where,
                f"container name {cname!r} is not valid for pnr: 2-63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
            )
        out: dict[str, Any] = {"name": cname, **self._image(base, svc), **self._commands(base, svc)}
        volumes = self._volumes(name, base, svc.get("volumes") or [], volume_names)
        for kind in ("secrets", "configs"):
            volumes += self._file_mounts(key_path(base, kind), kind, svc.get(kind) or [], data.get(kind) or {})
        parts = {
            "env": self._env(base, svc),
            "ports": self._ports(key_path(base, "ports"), svc.get("ports") or []),
            "volumes": volumes,
            "labels": self._labels(base, svc),
        }
        out.update({key: value for key, value in parts.items() if value})
        out.update(self._process(base, svc))
        return out

    def _image(self, base: str, svc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if svc.get("image"):
            out["image"] = svc["image"]
        if "build" in svc:
            out.update(self._build(base, svc["build"], has_image=bool(svc.get("image"))))
        if not out.get("image") and not out.get("build_path") and "provider" not in svc:
            self.fail(base, "has neither image nor build: pnr has nothing to run")
        return out

    def _commands(self, base: str, svc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("command", "entrypoint"):
            value = svc.get(key)
            if value is None:
                continue
            if not value:  # compose: [] / "" reset the image's; pnr refuses empty (a model change would allow it)
                self.note(
                    key_path(base, key),
                    f"empty: pnr cannot clear the image's {'CMD' if key == 'command' else 'ENTRYPOINT'}, so the "
                    "image's own is used",
                )
                continue
            out[key] = value
        return out

    def _process(self, base: str, svc: dict[str, Any]) -> dict[str, Any]:
        """How the container's process runs and stops."""
        out: dict[str, Any] = {key: svc[key] for key in ("working_dir", "user") if svc.get(key)}
        signal = str(svc.get("stop_signal") or "").strip().upper()
        if signal:
            out["stop_signal"] = signal if signal.startswith("SIG") or signal.isdigit() else f"SIG{signal}"
        if "init" in svc:
            out["init"] = self._bool(svc["init"], key_path(base, "init"))
        if "stop_grace_period" in svc:
            seconds = self._duration(svc["stop_grace_period"], key_path(base, "stop_grace_period"))
            if seconds is not None and seconds > MAX_STOP_GRACE:
                self.note(key_path(base, "stop_grace_period"), f"longer than pnr's limit: {MAX_STOP_GRACE:g}s used")
                seconds = MAX_STOP_GRACE
            if seconds is not None:
                out["stop_grace_period_seconds"] = seconds
        return out

    def _build_args(self, path: str, args: Any) -> dict[str, str]:
        """Build arguments as compose passes them: resolved when loading (already interpolated, like every key
        pnr does not expand itself); an argument without a value comes from the environment, or is left out."""
        items = args.items() if isinstance(args, dict) else [(*a.split("=", 1), None)[:2] for a in args]
        out: dict[str, str] = {}
        for key, value in items:
            if value is None:
                if key in self.env:
                    out[key] = self.env[key]
                    self.note(key_path(path, key), f"no value: {key} taken from the environment when importing")
                else:
                    self.note(key_path(path, key), f"no value and {key} is unset: left out, as compose does")
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            else:
                out[key] = str(value)
        return out

    def _build(self, base: str, build: Any, has_image: bool) -> dict[str, Any]:
        path = key_path(base, "build")
        spec: dict[str, Any] = {"context": build} if isinstance(build, str) else dict(build)
        out: dict[str, Any] = {}
        context = str(spec.get("context") or ".")
        if re.match(r"^[a-z][a-z0-9+.-]*://|^git@|^github\.com/", context):
            message = f"remote build context {context!r}: pnr builds only from a local folder"
            if has_image:
                self.note(path, f"{message}; the image is used (pulled if missing)")
            else:
                self.fail(path, f"{message}, and there is no image to pull instead")
            return out
        out["build_path"] = self._host_path(context)
        dockerfile = spec.get("dockerfile")
        if dockerfile and dockerfile != "Dockerfile":
            out["dockerfile"] = dockerfile
        args = self._build_args(key_path(path, "args"), spec.get("args") or {})
        if args:
            out["build_args"] = args
        for key in spec:
            if key in ("context", "dockerfile", "args") or key.startswith("x-"):
                continue
            self.note(key_path(path, key), "not applied by pnr's image build")
        if not has_image:
            self.note(
                path,
                "the built image is tagged pnr-<domain>-<chunk>:latest (compose: <project>-<service>); "
                "add image: to choose the tag",
            )
        return out

    # -- env and labels -----------------------------------------------------------------------------------
    def _env(self, base: str, svc: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        files = svc.get("env_file")
        if files:
            for i, item in enumerate([files] if isinstance(files, str) else files):
                path = (
                    key_path(key_path(base, "env_file"), i)
                    if not isinstance(files, str)
                    else key_path(base, "env_file")
                )
                entries = self._read_env_file(path, item)
                if entries is None:
                    continue
                for line in entries:
                    where = f"{path} (line {line.line})"
                    if line.value is None:
                        env[line.key] = self._inherited(where, line.key)
                    elif line.literal:
                        if "${" in line.value:
                            self.note(
                                where,
                                f"{line.key}: single-quoted (literal) in the env file, but pnr expands "
                                "${...} in env values",
                            )
                        env[line.key] = line.value
                    else:
                        env[line.key] = self._env_value(where, line.value)
                self.note(
                    path,
                    f"read when importing: its {len(entries)} variable(s) are copied into container.env "
                    "(re-import when the file changes; write ${VAR} in it to keep secrets out of the domain)",
                )
        environment = svc.get("environment")
        if environment:
            env.update(self._env_values(key_path(base, "environment"), environment, what="variable"))
        return env

    def _read_env_file(self, path: str, item: Any) -> list[EnvLine] | None:
        spec: dict[str, Any] = {"path": item} if isinstance(item, str) else dict(item)
        required = self._bool(spec.get("required", True), key_path(path, "required"))
        if spec.get("format") not in (None, "raw"):
            self.fail(key_path(path, "format"), f"env_file format {spec['format']!r} is not supported by pnr import")
            return None
        file = self.dir / os.path.expanduser(str(spec["path"]))
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            if required:
                self.fail(path, f"env file {str(spec['path'])!r} not found (relative to the compose file)")
            else:
                self.note(
                    path,
                    f"env file {str(spec['path'])!r} not found and not required: skipped, as compose does",
                )
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.fail(path, f"env file {str(spec['path'])!r} cannot be read: {exc}")
            return None
        try:
            entries = parse_env_file(text)
        except EnvFileError as exc:
            self.fail(path, f"env file {str(spec['path'])!r}: {exc}")
            return None
        if spec.get("format") == "raw":
            entries = [EnvLine(e.key, e.value, True, e.line) for e in entries]
        return entries

    def _env_values(self, path: str, values: Any, what: str) -> dict[str, str]:
        """A list_or_dict of variables in pnr's form: values as strings, `${VAR}` kept for pnr to expand."""
        out: dict[str, str] = {}
        items: list[tuple[str, Any]]
        if isinstance(values, dict):
            items = list(values.items())
        else:
            items = [(s.split("=", 1)[0], s.split("=", 1)[1] if "=" in s else None) for s in values]
        for key, value in items:
            where = key_path(path, key)
            if value is None:
                out[key] = self._inherited(where, key, what)
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, (int, float)):
                out[key] = str(value)
            else:
                out[key] = self._env_value(where, str(value))
        return out

    def _env_value(self, path: str, value: str) -> str:
        try:
            text, changes = tpl.to_pnr(tpl.parse(value), self.env)
        except tpl.TemplateError as exc:
            self.fail(path, str(exc))
            return value
        for change in changes:
            self.note(path, change)
        return text

    def _inherited(self, path: str, key: str, what: str = "variable") -> str:
        self.note(
            path,
            f"{what} {key} without a value: pnr takes it from its own environment when the run starts "
            f"(${{{key}:-}}: empty when unset; compose would leave it unset)",
        )
        return "${" + key + ":-}"

    def _labels(self, base: str, svc: dict[str, Any]) -> dict[str, str]:
        labels: dict[str, str] = {}
        files = svc.get("label_file")
        for i, item in enumerate([files] if isinstance(files, str) else files or []):
            path = (
                key_path(key_path(base, "label_file"), i)
                if not isinstance(files, str)
                else key_path(base, "label_file")
            )
            entries = self._read_env_file(path, item)
            for line in entries or []:
                labels[line.key] = line.value or ""
        values = svc.get("labels") or {}
        items = values.items() if isinstance(values, dict) else [[*s.split("=", 1), ""][:2] for s in values]
        for key, value in items:
            if isinstance(value, bool):
                labels[key] = "true" if value else "false"
            else:
                labels[key] = "" if value is None else str(value)
        for key in [k for k in labels if k.startswith("io.pnr.")]:
            del labels[key]
            self.note(key_path(key_path(base, "labels"), key), "dropped: labels starting with io.pnr. are pnr's own")
        return labels

    # -- ports ------------------------------------------------------------------------------------------
    def _ports(self, path: str, items: list[Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, item in enumerate(items):
            where = key_path(path, i)
            entries = self._port_entries(where, item)
            default_ip = False
            for cport, proto, ip, hport in entries:
                if proto not in ("tcp", "udp"):
                    self.note(
                        where,
                        f"protocol {proto} is not supported by pnr: container port {cport} is not published",
                    )
                    continue
                if hport is None:
                    self.note(
                        where,
                        f"container port {cport}: compose publishes it on a random host port; pnr needs "
                        "a fixed one, so it is not published (other chunks reach it on the domain network)",
                    )
                    continue
                key = str(cport) if proto == "tcp" else f"{cport}/udp"
                if key in out:
                    self.note(
                        where,
                        f"container port {key} is already published on {out[key]}; pnr publishes a "
                        f"container port once, so host port {hport} is not",
                    )
                    continue
                if ip is None:
                    default_ip = True
                    out[key] = str(hport)
                else:
                    out[key] = f"[{ip}]:{hport}" if ":" in ip else f"{ip}:{hport}"
            if default_ip:
                self.note(
                    where,
                    "published on 127.0.0.1 (pnr's default); compose publishes on every interface: "
                    "write 0.0.0.0:HOST:CONTAINER to keep that",
                )
        return out

    def _port_entries(self, path: str, item: Any) -> list[tuple[int, str, str | None, int | None]]:
        """(container port, protocol, host address, host port) for every port an item publishes."""
        parsed = self._long_port(path, item) if isinstance(item, dict) else self._short_port(path, str(item))
        if parsed is None:
            return []
        target, host, ip, proto = parsed
        if target is None:
            return []
        if host is None:
            return [(port, proto, ip, None) for port in target]
        if len(host) == len(target):
            return [(c, proto, ip, h) for c, h in zip(target, host, strict=True)]
        if len(target) == 1:
            self.note(
                path,
                f"host port range {host[0]}-{host[-1]}: compose picks a free port in it; pnr uses {host[0]}",
            )
            return [(target[0], proto, ip, host[0])]
        self.fail(path, f"port {item!r}: the host range and the container range differ in length")
        return []

    def _long_port(self, path: str, item: dict[str, Any]) -> _PortSpec | None:
        for key in ("mode", "name", "app_protocol"):
            if key in item:
                self.note(key_path(path, key), "not applied by pnr")
        target = self._port_range(path, str(item.get("target", "")))
        published = item.get("published")
        host = self._port_range(path, str(published)) if published not in (None, "") else None
        return target, host, item.get("host_ip") or None, str(item.get("protocol") or "tcp").lower()

    def _short_port(self, path: str, text: str) -> _PortSpec | None:
        """[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], ports or ranges, IPv6 addresses in brackets."""
        text, _, proto = text.strip().partition("/")
        ip = None
        if text.startswith("["):
            end = text.find("]:")
            if end < 0:
                self.fail(path, f"port {text!r}: an IPv6 address in brackets must be followed by ':'")
                return None
            ip, parts = text[1:end], text[end + 2 :].split(":")
        else:
            parts = text.split(":")
            if len(parts) >= 3:  # IP:HOST:CONTAINER (an IPv6 address without brackets has more colons)
                ip, parts = ":".join(parts[:-2]), parts[-2:]
        if len(parts) > 2:
            self.fail(path, f"port {text!r} must look like [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
            return None
        host = self._port_range(path, parts[0]) if len(parts) == 2 and parts[0] else None
        return self._port_range(path, parts[-1]), host, ip or None, (proto or "tcp").lower()

    def _port_range(self, path: str, text: str) -> list[int] | None:
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", text)
        if not m:
            self.fail(path, f"{text!r} is not a port or a port range")
            return None
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi <= 65535:
            self.fail(path, f"{text!r} is outside 1-65535 (or its range is reversed)")
            return None
        return list(range(lo, hi + 1))

    # -- volumes, secrets, configs -------------------------------------------------------------------------
    def _volume_names(self, data: dict[str, Any]) -> dict[str, str]:
        """Top-level volume key → the engine's volume name, as compose names it."""
        out: dict[str, str] = {}
        for key, spec in (data.get("volumes") or {}).items():
            spec = spec or {}
            external = spec.get("external")
            ext_name = external.get("name") if isinstance(external, dict) else None
            is_external = bool(external) and (not isinstance(external, str) or external.lower() in _TRUE)
            out[key] = spec.get("name") or ext_name or (key if is_external else f"{self.project}_{key}")
        return out

    def _volumes(self, name: str, base: str, items: list[Any], volume_names: dict[str, str]) -> list[str]:
        out: list[str] = []
        for i, item in enumerate(items):
            path = key_path(key_path(base, "volumes"), i)
            spec = self._short_volume(path, item) if isinstance(item, str) else dict(item)
            mount = self._volume(name, i, path, spec, volume_names) if spec is not None else None
            if mount is None:
                continue
            out.append(mount)
            for key in ("consistency", "bind", "volume", "tmpfs", "image"):
                value = spec.get(key) if spec else None
                if value in (None, {}) or (key == "bind" and value in ({"create_host_path": True},)):
                    continue
                self.note(key_path(path, key), f"{key} options are not applied by pnr")
            for option in (spec or {}).get("_options", []):
                self.note(path, f"mount option {option!r} is not applied by pnr (only ro/rw)")
        return out

    def _volume(
        self, name: str, index: int, path: str, spec: dict[str, Any], volume_names: dict[str, str]
    ) -> str | None:
        """One mount as pnr's SOURCE:TARGET[:ro], or None (reported) when pnr cannot mount it."""
        kind = spec.get("type")
        target = str(spec.get("target") or "")
        source = str(spec.get("source") or "")
        if kind not in ("bind", "volume"):
            self.note(path, f"a {kind} mount is not supported by pnr: not mounted")
            return None
        if not target.startswith("/"):
            self.fail(path, f"the target {target!r} must be an absolute path in the container")
            return None
        if kind == "bind":
            if not source:
                self.fail(path, "a bind mount needs a source path")
                return None
            host = self._host_path(source)
        elif not source:
            host = f"{self.project}_{name}_{index}"
            self.note(
                path,
                f"anonymous volume: pnr needs a name, so it is the named volume {host!r} (kept between runs, "
                "unlike compose's anonymous volumes)",
            )
        elif source not in volume_names:
            self.fail(path, f"volume {source!r} is not declared in the top-level volumes")
            return None
        else:
            host = volume_names[source]
        read_only = self._bool(spec.get("read_only", False), key_path(path, "read_only"))
        return f"{host}:{target}:ro" if read_only else f"{host}:{target}"

    def _short_volume(self, path: str, text: str) -> dict[str, Any] | None:
        parts = text.split(":")
        if len(parts) == 1:
            return {"type": "volume", "target": parts[0]}
        if len(parts) > 3 or not all(parts):
            self.fail(path, f"volume {text!r} must look like [SOURCE:]TARGET[:MODE]")
            return None
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) == 3 else []
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        return {
            "type": kind,
            "source": source,
            "target": target,
            "read_only": "ro" in options,
            "_options": [o for o in options if o not in ("ro", "rw")],
        }

    def _file_mounts(self, path: str, kind: str, items: list[Any], declared: dict[str, Any]) -> list[str]:
        """File-based secrets/configs as read-only bind mounts, where compose mounts them."""
        out: list[str] = []
        singular = kind[:-1]
        for i, item in enumerate(items):
            where = key_path(path, i)
            source = item if isinstance(item, str) else str(item.get("source"))
            target = None if isinstance(item, str) else item.get("target")
            if isinstance(item, dict):
                for key in ("uid", "gid", "mode"):
                    if key in item:
                        self.note(key_path(where, key), "not applied: the file keeps its owner and mode on the host")
            spec = declared.get(source)
            if spec is None:
                self.fail(where, f"{singular} {source!r} is not declared in the top-level {kind}")
                continue
            if not spec.get("file"):
                origin = (
                    ", ".join(k for k in ("environment", "content", "external", "name") if k in spec) or "elsewhere"
                )
                self.note(
                    where,
                    f"{singular} {source!r} comes from {origin}: pnr mounts only file-based {kind}, so it "
                    "is not mounted",
                )
                continue
            default = f"/run/secrets/{source}" if kind == "secrets" else f"/{source}"
            mount = str(target) if target else default
            if not mount.startswith("/"):
                mount = f"/run/secrets/{mount}" if kind == "secrets" else f"/{mount}"
            out.append(f"{self._host_path(str(spec['file']))}:{mount}:ro")
            self.note(where, f"mounted read-only from the file at {mount} (a bind mount)")
        return out

    def _host_path(self, source: str) -> str:
        """A host path of the compose file (relative to its folder), made relative to the domain file."""
        if source.startswith(("/", "~")):
            return source
        absolute = os.path.normpath(self.dir / source)
        if os.path.commonpath([absolute, self.out_dir]) == os.path.sep:  # nothing in common: absolute is clearer
            return absolute
        rel = os.path.relpath(absolute, self.out_dir)
        return rel if rel.startswith(".") else f"./{rel}"

    # -- the rest ---------------------------------------------------------------------------------------
    def _unsupported(self, name: str, svc: dict[str, Any]) -> None:
        base = key_path("services", name)
        for key, value in svc.items():
            rule = SERVICE_KEYS.get(key)
            if rule is None or rule.handling != "unsupported" or value in DEFAULT_VALUES.get(key, ()):
                continue
            path = key_path(base, key)
            if key == "provider":
                self.fail(path, rule.pnr)
            elif key == "deploy" and isinstance(value, dict) and value:
                for sub in value:
                    if not str(sub).startswith("x-"):
                        self.note(key_path(path, sub), _DEPLOY.get(sub, "not applied: a swarm/orchestrator setting"))
            else:
                self.note(path, rule.pnr)

    def _top_level_notes(self, data: dict[str, Any]) -> None:
        if "version" in data:
            self.note("version", "obsolete: ignored, as compose v2 ignores it")
        if data.get("include"):
            self.note("include", "not supported: the included files are not imported; copy their services here")
        if data.get("models"):
            self.note("models", "not supported: pnr provides no AI models")
        for key in data.get("networks") or {}:
            self.note(
                key_path("networks", key),
                f"not created: every chunk joins one network, pnr_{self.project}, "
                "where chunk and container names resolve",
            )
        for key, spec in (data.get("volumes") or {}).items():
            path = key_path("volumes", key)
            for sub in ("driver", "driver_opts", "labels"):
                if (spec or {}).get(sub):
                    self.note(
                        key_path(path, sub),
                        "not applied: pnr creates volumes with the local driver and its own labels",
                    )
            if (spec or {}).get("external") not in (None, False, "false"):
                self.note(
                    key_path(path, "external"),
                    "pnr creates the volume if it is missing (compose refuses to start)",
                )

    # -- scalar helpers --------------------------------------------------------------------------------------
    def _bool(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in _TRUE | _FALSE:
            return value in _TRUE
        self.fail(path, f"{value!r} is not a boolean (true or false)")
        return False

    def _int(self, value: Any, path: str) -> int | None:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(path, f"{value!r} is not a whole number")
            return None
        if number < 0:
            self.fail(path, f"{value!r} must not be negative")
            return None
        return number

    def _duration(self, value: Any, path: str) -> float | None:
        """A compose duration ("1m30s", "500ms", "2.5s") in seconds; None when absent or invalid."""
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            text = str(value).strip()
            seconds = 0.0
            pos = 0
            while pos < len(text):
                m = _DURATION_PART.match(text, pos)
                if not m:
                    break
                seconds += float(m.group(1)) * _UNIT[m.group(2)]
                pos = m.end()
            if (pos != len(text) or not text) and text != "0":
                self.fail(path, f"{value!r} is not a duration like '30s', '1m30s' or '500ms'")
                return None
        if seconds > MAX_SECONDS:
            self.fail(path, f"{value!r} is longer than a day (pnr's limit)")
            return None
        return round(seconds, 6)


_DEPLOY = {
    "resources": "not applied: pnr sets no resource limits or reservations",
    "replicas": "not applied: pnr runs one container per chunk",
    "restart_policy": "not applied: pnr sets no restart policy (pnr up --watch reports a stopped container)",
    "placement": "not applied: pnr runs every container on one engine",
    "mode": "not applied: pnr runs one container per chunk",
    "labels": "not applied: service labels are a swarm concept; use labels",
    "update_config": "not applied: pnr has no rolling updates",
    "rollback_config": "not applied: pnr has no rolling updates",
    "endpoint_mode": "not applied: pnr has no service load balancing",
}


def _timing(
    check: dict[str, Any],
    interval: float,
    timeout: float,
    retries: int,
    start_period: float,
    threshold: bool,
) -> dict[str, Any]:
    """A probe's timing from a healthcheck's. The deadline covers the start period and every retry twice over:
    docker's own check would have declared the service unhealthy well before."""
    out = dict(check)
    out.setdefault("interval_seconds", interval)
    out["timeout_seconds"] = min(timeout, MAX_SECONDS)
    deadline = round(min(MAX_SECONDS, max(60.0, 2 * (start_period + retries * (interval + timeout)))), 3)
    out["deadline_seconds"] = deadline
    if start_period:
        out["start_period_seconds"] = min(start_period, deadline / 2)
    if threshold:
        out["failure_threshold"] = retries
    return out


def _dumps(value: Any, indent: int, used: int, width: int = 110) -> str:
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


def _pnr(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt, "response": ["yes"], "tv": "Y"}


def _prompt_of(signal: str) -> str:
    if signal == SYSTEM_READY:
        return "is system ready?"
    service, _, suffix = signal.rpartition("_")
    condition = {v: k for k, v in _SUFFIX.items()}[suffix]
    return _PROMPT[condition].format(service)


def _normalize_project(name: str) -> str:
    """Compose's project name normalization: lower case, only [a-z0-9_-], no leading '_' or '-'."""
    return "".join(_PROJECT_CHARS.findall(name.lower())).lstrip("_-")


def _is_env_position(loc: tuple[str | int, ...]) -> bool:
    """Values pnr expands itself (container env) keep their `${VAR}` when interpolating."""
    return len(loc) == 3 and loc[0] == "services" and loc[2] == "environment"


def _path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path = key_path(path, part)
    return path


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _merge(base: Any, over: Any, key: str) -> Any:
    """`extends`: the override's mappings merged into the base's, lists appended, scalars replaced."""
    if key in _MAPPING_LISTS:
        base, over = _as_mapping(base), _as_mapping(over)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, str(k)) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED_LISTS:
        seen = {json.dumps(item, sort_keys=True, default=str) for item in base}
        return base + [item for item in over if json.dumps(item, sort_keys=True, default=str) not in seen]
    return over


def _as_mapping(value: Any) -> Any:
    if isinstance(value, list):
        return {s.split("=", 1)[0]: (s.split("=", 1)[1] if "=" in s else None) for s in value}
    return value


def _topological(active: dict[str, dict[str, _Dep]]) -> list[str]:
    """Services in an order where each comes after its dependencies (file order among equals)."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(active)
    while pending:
        ready = [name for name in pending if all(dep in done for dep in active[name])]
        if not ready:  # cannot happen: cycles were refused
            ready = pending[:1]
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [name for name in pending if name not in done]
    return order
