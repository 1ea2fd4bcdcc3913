"""Config models (pydantic v2) and the loader that turns a JSON file into a validated `Domain`.

Every model forbids unknown keys, so a typo in hand-written JSON is an error, not a silent default.
`load_domain` wraps every failure once, naming the file and the JSON path of each problem.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pnr.exceptions import ConfigError, ConfigIssue

MAX_CONFIG_BYTES = 5 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_CHUNKS = 1000  # per domain; far beyond one host's capacity, and keeps planning linear-ish
MAX_ISSUES = 50  # reported per file; the rest are counted

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SIGNAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


def _check_signal(value: str) -> str:
    if not _SIGNAL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid signal name: use letters, digits, '_', '.', ':' or '-' (at most 128)"
        )
    return value


def _upper_tv(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Name = Annotated[str, AfterValidator(_check_name)]
SignalName = Annotated[str, AfterValidator(_check_signal)]
# the schema lists lower case too: the seed writes "tv": "y" and editors must not flag it
TruthValue = Annotated[
    Literal["Y", "N", "U"], BeforeValidator(_upper_tv),
    WithJsonSchema({"type": "string", "enum": ["Y", "N", "U", "y", "n", "u"], "description": "trivalent truth value, any case"}),
]
# strict: `true` is not 1 second; inf/nan are refused rather than compared
Seconds = Annotated[float, Field(gt=0, le=86_400, strict=True, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PnR(_Model):
    """A signal value: prompt, response, trivalent truth value (any case in, upper case stored)."""

    prompt: str = ""
    response: list[str] = Field(default_factory=list)
    tv: TruthValue = "U"


class MappedSignal(_Model):
    """What a probe outcome writes: `key` is the signal name."""

    key: SignalName
    response: list[str] = Field(default_factory=list)
    tv: TruthValue

    def to_pnr(self, prompt: str = "") -> PnR:
        return PnR(prompt=prompt, response=list(self.response), tv=self.tv)


class StatusMapping(_Model):
    success: MappedSignal | None = None
    failure: MappedSignal | None = None


NonNegSeconds = Annotated[float, Field(ge=0, le=86_400)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]
_JSON_PATH_RE = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_json_path(path: str) -> list[str | int]:
    """`$.checks[0].status` (or `checks[0].status`) as steps: ['checks', 0, 'status']."""
    rest = path.removeprefix("$")
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _JSON_PATH_RE.match(rest, pos)
        if not m or m.end() == pos:
            raise ValueError(f"json_path {path!r} must look like '$.status' or '$.checks[0].status'")
        steps.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
        pos = m.end()
    if not steps:
        raise ValueError(f"json_path {path!r} names no field; write e.g. '$.status'")
    return steps


_CODE_RE = re.compile(r"^(?:(?P<cls>[1-5])xx|(?P<lo>\d{3})(?:-(?P<hi>\d{3}))?)$")


def parse_expected_code(value: int | list[int] | str) -> list[tuple[int, int]]:
    """200 → [(200, 200)]; [200, 204] → two ranges; "2xx" → [(200, 299)]; "200-204" → [(200, 204)]."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected_code must not be an empty list")
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int):
            lo = hi = item
        else:
            m = _CODE_RE.match(str(item).strip().lower())
            if not m:
                raise ValueError(f"expected_code {item!r} must be a status (200), a list ([200, 204]), a class ('2xx') or a range ('200-299')")
            if m["cls"]:
                lo, hi = int(m["cls"]) * 100, int(m["cls"]) * 100 + 99
            else:
                lo = int(m["lo"])
                hi = int(m["hi"]) if m["hi"] else lo
        if not (100 <= lo <= hi <= 599):
            raise ValueError(f"expected_code {item!r} is outside 100-599 (or its range is reversed)")
        out.append((lo, hi))
    return out


def _check_codes(value: int | list[int] | str) -> int | list[int] | str:
    parse_expected_code(value)
    return value


_CHILD_FORBIDDEN = ("interval_seconds", "deadline_seconds", "start_period_seconds", "success_threshold",
                    "failure_threshold", "status_mapping")


class _CheckBase(_Model):
    """Timing every probe kind shares. The first attempt runs at once; then one every `interval_seconds`
    until `success_threshold` successes in a row, `failure_threshold` counted failures in a row (failures
    inside `start_period_seconds` do not count), or `deadline_seconds` after the first attempt."""

    timeout_seconds: Seconds = 2.0
    interval_seconds: Seconds = 0.25
    deadline_seconds: Seconds = 60.0
    start_period_seconds: NonNegSeconds = 0.0
    success_threshold: Annotated[int, Field(ge=1, le=1000)] = 1
    failure_threshold: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    status_mapping: StatusMapping = Field(default_factory=StatusMapping)

    @model_validator(mode="after")
    def _timing_fits(self) -> _CheckBase:
        if self.start_period_seconds >= self.deadline_seconds:
            raise ValueError(
                f"start_period_seconds ({self.start_period_seconds:g}) must be shorter than deadline_seconds ({self.deadline_seconds:g})"
            )
        return self


class _PortCheck(_CheckBase):
    """A probe that dials a port: the published host port of `port_key` (target "host", the default), or
    the container's own address on the domain network (target "network", for services that publish none)."""

    port_key: str | None = None
    target: Literal["host", "network"] = "host"


class TcpCheck(_PortCheck):
    """Ready when a TCP connection to the published host port of `port_key` is accepted and kept open."""

    type: Literal["tcp"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class HttpCheck(_PortCheck):
    """Ready when METHOD scheme://HOST:PORT{path} answers `expected_code` and every body condition holds."""

    type: Literal["http"]
    path: str = "/"
    method: Annotated[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], BeforeValidator(_upper)] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, description="request body to send (e.g. with POST)")
    scheme: Literal["http", "https"] = "http"
    tls_verify: bool = True
    follow_redirects: bool = False
    expected_code: Annotated[int | list[int] | str, AfterValidator(_check_codes)] = 200
    body_contains: str | None = None
    body_regex: Regex | None = None
    json_path: str | None = None
    json_value: Any = Field(default=None, description="with json_path: the value the field must equal")

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', e.g. '/{value}'")
        return value

    @field_validator("json_path")
    @classmethod
    def _json_path_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_json_path(value)
        return value

    @model_validator(mode="after")
    def _json_value_needs_path(self) -> HttpCheck:
        if "json_value" in self.model_fields_set and self.json_path is None:
            raise ValueError("json_value needs json_path (the field to compare), e.g. \"json_path\": \"$.status\"")
        return self

    @property
    def compares_json_value(self) -> bool:
        return "json_value" in self.model_fields_set

    def code_ok(self, code: int) -> bool:
        return any(lo <= code <= hi for lo, hi in parse_expected_code(self.expected_code))


def _command_ok(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"command cannot be split into arguments: {exc}") from None
    else:
        parts = value
    if not parts:
        raise ValueError("command must not be empty")
    return value


class ExecCheck(_CheckBase):
    """Ready when `command` run inside the container exits 0 (and its output matches, if asked)."""

    type: Literal["exec"]
    command: Annotated[str | list[str], AfterValidator(_command_ok)]
    output_contains: str | None = None
    output_regex: Regex | None = None

    def args(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class LogCheck(_CheckBase):
    """Ready when `pattern` (a regular expression, matched per line) has appeared `count` times in the logs."""

    type: Literal["log"]
    pattern: Regex
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    stream: Literal["both", "stdout", "stderr"] = "both"


class DockerCheck(_CheckBase):
    """Ready when the image's own HEALTHCHECK reports `healthy`; `unhealthy` is retried until the deadline."""

    type: Literal["docker"]


class SignalCheck(_CheckBase):
    """Ready when the signal `signal` has truth value `tv` in the runtime state, typically written by the
    container itself into the runtime folder (mounted at /runtime with container `mount_runtime: true`)."""

    type: Literal["signal"]
    signal: SignalName
    tv: TruthValue = "Y"


class _CompositeCheck(_CheckBase):
    checks: Annotated[list[HealthCheck], Field(min_length=1, max_length=32)]

    @field_validator("checks")
    @classmethod
    def _children_keep_no_timing(cls, value: list[Any]) -> list[Any]:
        for i, child in enumerate(value):
            clash = sorted(set(child.model_fields_set) & set(_CHILD_FORBIDDEN))
            if clash:
                raise ValueError(
                    f"checks[{i}] sets {', '.join(clash)}: inside all/any the outer check owns timing and "
                    f"status_mapping; a child may set only timeout_seconds"
                )
        return value


class AllCheck(_CompositeCheck):
    """Ready when every child check has passed (each child passes once; passed children are not re-run)."""

    type: Literal["all"]


class AnyCheck(_CompositeCheck):
    """Ready when one child check passes in an attempt."""

    type: Literal["any"]


class PluginCheck(_CheckBase):
    """Base of third-party check models (entry point group `pnr.probes`): subclass it with
    `type: Literal["mykind"]` and your fields. Validation dispatches to the registered model."""

    # in the JSON Schema a plugin type excludes the built-in ones, or every tcp check would match two
    # branches of the health_check oneOf and no built-in check would validate in an editor
    type: Annotated[str, WithJsonSchema({"type": "string", "not": {"enum": ["tcp", "http", "exec", "log", "docker", "signal", "all", "any"]}})]

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: Any, handler: Any) -> Any:
        if cls is PluginCheck and isinstance(data, dict):
            model = plugin_check_models().get(str(data.get("type")))
            if model is not None:
                return model.model_validate(data)
        return handler(data)


BUILTIN_CHECKS: dict[str, Any] = {
    "tcp": TcpCheck, "http": HttpCheck, "exec": ExecCheck, "log": LogCheck, "docker": DockerCheck,
    "signal": SignalCheck, "all": AllCheck, "any": AnyCheck,
}
_PLUGIN_CHECKS: dict[str, type[PluginCheck]] = {}


def plugin_check_models() -> dict[str, type[PluginCheck]]:
    """Third-party check models, loaded once from the `pnr.probes` entry points."""
    from pnr.probes import load_plugins  # late: pnr.probes imports this module

    load_plugins()
    return _PLUGIN_CHECKS


def check_kinds() -> list[str]:
    return [*BUILTIN_CHECKS, *sorted(k for k in plugin_check_models() if k not in BUILTIN_CHECKS)]


def _check_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    if kind in BUILTIN_CHECKS or isinstance(value, PluginCheck):
        return kind if kind in BUILTIN_CHECKS else "plugin"
    return "plugin" if kind in plugin_check_models() else kind


HealthCheck = Annotated[
    Annotated[TcpCheck, Tag("tcp")] | Annotated[HttpCheck, Tag("http")] | Annotated[ExecCheck, Tag("exec")] | Annotated[LogCheck, Tag("log")] | Annotated[DockerCheck, Tag("docker")] | Annotated[SignalCheck, Tag("signal")] | Annotated[AllCheck, Tag("all")] | Annotated[AnyCheck, Tag("any")] | Annotated[PluginCheck, Tag("plugin")],
    Discriminator(_check_tag),
]
AllCheck.model_rebuild()
AnyCheck.model_rebuild()


def iter_checks(check: Any) -> Any:
    """The check and every check nested in it (all/any), depth first."""
    yield check
    for child in getattr(check, "checks", None) or ():
        yield from iter_checks(child)


class PortBinding(_Model):
    container_port: int
    protocol: Literal["tcp", "udp"]
    host_ip: str
    host_port: int


_HOST_RE = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):)?(?P<port>\d{1,5})$")
_CPORT_RE = re.compile(r"^(?P<port>\d{1,5})(?:/(?P<proto>tcp|udp))?$")
DEFAULT_HOST_IP = "127.0.0.1"


def parse_port(container_key: str, host_value: str | int) -> PortBinding:
    """`"27017"` → `"27017"`, or `"8080/tcp"` → `"0.0.0.0:8080"`; host address defaults to 127.0.0.1."""
    cmatch = _CPORT_RE.match(container_key)
    if not cmatch:
        raise ValueError(f"container port {container_key!r} must look like '8080' or '8080/tcp'")
    hmatch = _HOST_RE.match(str(host_value))
    if not hmatch:
        raise ValueError(f"host port {host_value!r} must look like '8080' or '127.0.0.1:8080'")
    cport, hport = int(cmatch["port"]), int(hmatch["port"])
    for label, port in (("container port", cport), ("host port", hport)):
        if not 1 <= port <= 65535:
            raise ValueError(f"{label} {port} is out of range 1-65535")
    ip = hmatch["ip"] or DEFAULT_HOST_IP
    if ip == "localhost":
        ip = "127.0.0.1"
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise ValueError(f"host address {ip!r} in {host_value!r} is not an IP address") from None
    return PortBinding(
        container_port=cport, protocol=cmatch["proto"] or "tcp", host_ip=ip.strip("[]"), host_port=hport
    )


_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


class ContainerSpec(_Model):
    """One container: what to run and how to publish it."""

    name: Name
    image: str | None = None
    ports: dict[str, StrictStr | StrictInt] = Field(default_factory=dict)
    env: list[str] | dict[str, str | int | float | bool] = Field(default_factory=dict)
    command: str | list[str] | None = None
    volumes: list[str] = Field(default_factory=list)
    build_path: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    mount_runtime: bool = Field(default=False, description="bind the runtime folder at /runtime (signal probes)")

    @field_validator("ports")
    @classmethod
    def _ports_parse(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for key, host in value.items():
            parse_port(key, host)
        return value

    @field_validator("env")
    @classmethod
    def _env_shape(cls, value: list[str] | dict[str, Any]) -> list[str] | dict[str, Any]:
        keys = [item.split("=", 1)[0] for item in value] if isinstance(value, list) else list(value)
        if isinstance(value, list):
            bad = [item for item in value if "=" not in item]
            if bad:
                raise ValueError(f"env entry {bad[0]!r} must look like 'KEY=VALUE'")
        for key in keys:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
        return value

    @field_validator("command")
    @classmethod
    def _command_splits(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"command cannot be split into arguments: {exc}") from None
        if value is not None and not value:
            raise ValueError("command must not be empty (leave it out to use the image's default)")
        return value

    @field_validator("name")
    @classmethod
    def _docker_name_length(cls, value: str) -> str:
        if len(value) < 2:  # Docker refuses one-character container names
            raise ValueError(f"container name {value!r} is too short: Docker needs at least 2 characters")
        return value

    @field_validator("image")
    @classmethod
    def _image_ref(cls, value: str | None) -> str | None:
        if value is not None and value and not _IMAGE_RE.match(value):
            raise ValueError(f"image {value!r} is not a valid image reference (like 'redis:7' or 'registry:5000/team/app:1.2')")
        return value

    @field_validator("volumes")
    @classmethod
    def _volume_shape(cls, value: list[str]) -> list[str]:
        for item in value:
            parts = item.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"volume {item!r} must look like 'SOURCE:/container/path[:ro|rw]'")
            if not parts[0].startswith((".", "/", "~")) and not _VOLUME_NAME_RE.match(parts[0]):
                raise ValueError(f"volume source {parts[0]!r} is neither a path (starting with '/', '.' or '~') "
                                 "nor a volume name (2+ letters, digits, '_', '.', '-')")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"volume mode in {item!r} must be 'ro' or 'rw'")
        return value

    @field_validator("labels")
    @classmethod
    def _no_pnr_labels(cls, value: dict[str, str]) -> dict[str, str]:
        clash = [key for key in value if key.startswith("io.pnr.")]
        if clash:
            raise ValueError(f"label {clash[0]!r} is reserved: labels starting with 'io.pnr.' are pnr's own")
        return value

    @model_validator(mode="after")
    def _image_or_build(self) -> ContainerSpec:
        if not self.image and not self.build_path:
            raise ValueError("give 'image' (an image name) or 'build_path' (a folder with a Dockerfile)")
        return self

    def port_bindings(self) -> dict[str, PortBinding]:
        return {key: parse_port(key, host) for key, host in self.ports.items()}

    def command_args(self) -> list[str] | None:
        """The command as an argument list: a string is split like a shell would, never run by one."""
        if self.command is None:
            return None
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)

    def env_map(self) -> dict[str, str]:
        if isinstance(self.env, list):
            return dict(item.split("=", 1) for item in self.env)
        return {key: _env_str(value) for key, value in self.env.items()}


def _env_str(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


DependencyPolicy = Literal["ignore", "stop", "restart"]


class DesignChunk(_Model):
    """One container, its gate, its readiness probe and the signals it promises."""

    name: Name
    gatekeeper: dict[SignalName, PnR] = Field(default_factory=dict)
    flowout: dict[SignalName, PnR] = Field(default_factory=dict)
    health_check: HealthCheck | None = None
    kind: Literal["service", "job"] = Field(
        default="service", description="service: ready by its health_check; job: completed when it exits 0"
    )
    container: ContainerSpec
    on_dependency_lost: DependencyPolicy | None = Field(
        default=None,
        description="watch mode (pnr up --watch), when a gatekeeper signal stops holding: ignore (log only), stop "
        "(stop the container; start it again when the gate holds) or restart (keep it running; restart it when the "
        "gate holds again). Default: the domain's on_dependency_lost",
    )
    # Legacy keys of the original Go program: accepted so old configs load, and ignored.
    flowin: dict[str, Any] | None = Field(default=None, description="legacy, ignored")
    status: str | None = Field(default=None, description="legacy, ignored")


class Cpux(_Model):
    """A unit of execution: its chunks run in one Prefect flow run."""

    design_chunks: Annotated[list[DesignChunk], Field(min_length=1)]


class Domain(_Model):
    """A whole config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"title": "pnr domain config"})

    name: Name
    cpuxs: Annotated[dict[Name, Cpux], Field(min_length=1)]
    mount_runtime: bool = Field(default=False, description="mount the runtime folder at /runtime in every container")
    on_dependency_lost: DependencyPolicy = Field(
        default="ignore", description="default of every chunk's on_dependency_lost (watch mode)",
    )

    def dependency_policy(self, chunk: DesignChunk) -> DependencyPolicy:
        """What watch mode does to `chunk` when its gate stops holding (the chunk's setting, else the domain's)."""
        return chunk.on_dependency_lost or self.on_dependency_lost

    @model_validator(mode="after")
    def _not_too_many_chunks(self) -> Domain:
        n = sum(len(c.design_chunks) for c in self.cpuxs.values())
        if n > MAX_CHUNKS:
            raise ValueError(f"{n} design chunks; a domain may have at most {MAX_CHUNKS}")
        return self

    def chunks(self) -> list[tuple[str, DesignChunk]]:
        return [(cpux_name, chunk) for cpux_name, cpux in self.cpuxs.items() for chunk in cpux.design_chunks]


_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$")
_SCALAR_TAGS = ("str", "int", "float", "bool")


def _union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """True when loc[i] is a tag pydantic inserts for a union member, not a key of the document."""
    part = loc[i]
    if not isinstance(part, str) or i == 0:
        return False
    before = loc[i - 1]
    tag = i < len(loc) - 1 or part in BUILTIN_CHECKS or part == "plugin"  # last: a whole-check error
    if before == "health_check" and tag:  # discriminated union: the probe type ('tcp')
        return True
    if isinstance(before, int) and i > 1 and loc[i - 2] == "checks" and tag:  # a child of all/any
        return True
    if part.startswith(("function-", "list[", "dict[")):  # never a valid key where a union can stand
        return True
    two_back = str(loc[i - 2]) if i > 1 else ""
    last = i == len(loc) - 1
    return last and part in _SCALAR_TAGS and (
        before in ("command", "expected_code") or two_back == "ports" or two_back.startswith("dict[")
    )


def json_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a JSON path: cpuxs.x.design_chunks[0].health_check.port_key.

    Keys that are not plain names are quoted (`cpuxs["a b"]`, ASCII-escaped) so a path is one printable line."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or _union_tag(loc, i):
            continue
        elif _PLAIN_KEY_RE.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _merge_union_issues(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """A value that fits no member of a union gives one error per member: say it once, per path."""
    merged: dict[str, ConfigIssue] = {}
    for issue in issues:
        prev = merged.get(issue.path)
        if prev is None:
            merged[issue.path] = issue
        elif issue.message.startswith("Input should be a valid ") and prev.message.startswith("Input should be a valid "):
            merged[issue.path] = ConfigIssue(issue.path, f"{prev.message} or {issue.message.removeprefix('Input should be a valid ')}")
        elif issue.message != prev.message:
            merged[issue.path + "\0" + issue.message] = issue
    return list(merged.values())


_FIELD_MODELS: dict[str, Any] = {}  # filled below: field name -> model of its value (or of its map values)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where the unknown key `loc[-1]` stands, to suggest a fix for a typo."""
    parent = loc[:-1]
    if not parent:
        return list(Domain.model_fields)
    last = parent[-1]
    before = parent[-2] if len(parent) > 1 else None
    if last in BUILTIN_CHECKS and (before == "health_check" or (isinstance(before, int) and len(parent) > 2 and parent[-3] == "checks")):
        model: Any = BUILTIN_CHECKS[last]
    elif isinstance(last, int) and before == "design_chunks":
        model = DesignChunk
    elif isinstance(before, str) and before in ("cpuxs", "gatekeeper", "flowout"):
        model = _FIELD_MODELS[before]
    else:
        model = _FIELD_MODELS.get(str(last))
    return list(model.model_fields) if model is not None else []


def _issue_from_error(err: Any, data: Any) -> ConfigIssue:
    loc = tuple(err["loc"])
    path = json_path(loc)
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        return ConfigIssue(path, f"unknown key {key!r}{hint}")
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


def _depth(obj: Any, limit: int) -> int:
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


def parse_domain(data: Any, source: str = "<config>", dup_keys: dict[int, list[str]] | None = None) -> Domain:
    """Validate already-parsed JSON; raise ConfigError naming `source` and each JSON path."""
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
        issues = _merge_union_issues([_issue_from_error(err, data) for err in exc.errors(include_url=False)])
        raise ConfigError(source, _capped(issues)) from None


def load_domain(path: str | Path) -> Domain:
    """Read, parse and validate a domain config file. Every failure is a ConfigError (never a traceback)."""
    path = Path(path)
    source = str(path)
    try:
        if path.is_dir():
            raise ConfigError(source, [ConfigIssue("", "is a directory; give a JSON config file")])
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(source, [ConfigIssue("", f"is {size} bytes; configs larger than {MAX_CONFIG_BYTES} are refused")])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found")]) from None
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")]) from None
    dup_keys: dict[int, list[str]] = {}
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _no_dup_keys(pairs, dup_keys))
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except RecursionError:
        raise ConfigError(source, [ConfigIssue("", f"nested deeper than {MAX_JSON_DEPTH} levels")]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(source, [ConfigIssue("", f"invalid JSON: {str(exc).split(':')[0]}")]) from None
    return parse_domain(data, source, dup_keys)


def _no_dup_keys(pairs: list[tuple[str, Any]], dups: dict[int, list[str]]) -> dict[str, Any]:
    """json object hook: a repeated key would silently drop a value, so remember it (reported with its path)."""
    out: dict[str, Any] = {}
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


def _scan_text(data: Any, dups: dict[int, list[str]]) -> list[ConfigIssue]:
    """Duplicate keys, NUL characters and lone surrogates anywhere in the document, with their JSON paths."""
    issues: list[ConfigIssue] = []
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(data, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, dict):
            for key in dups.get(id(node), []):
                issues.append(ConfigIssue(json_path((*loc, key)), f"key {key!r} appears more than once in the same object"))
            for key, value in node.items():
                problem = _bad_text(key)
                if problem:
                    issues.append(ConfigIssue(json_path(loc), f"key {key!r} {problem}"))
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


_FIELD_MODELS.update(
    cpuxs=Cpux, container=ContainerSpec, status_mapping=StatusMapping, success=MappedSignal,
    failure=MappedSignal, gatekeeper=PnR, flowout=PnR,
)


def domain_json_schema() -> dict[str, Any]:
    """The JSON Schema of a domain config, for editors (committed as pnr/schema.json)."""
    return Domain.model_json_schema()
