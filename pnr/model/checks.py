"""Health-check models: one per probe kind, a discriminated union on `type`, and the registry of
third-party kinds (entry point group `pnr.probes`)."""

from __future__ import annotations

import importlib.metadata
import shlex
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pnr.model.fields import (
    Model,
    NonNegSeconds,
    Regex,
    Seconds,
    SignalName,
    StatusMapping,
    TruthValue,
    _check_codes,
    parse_expected_code,
    parse_json_path,
)

_CHILD_FORBIDDEN = (
    "interval_seconds",
    "deadline_seconds",
    "start_period_seconds",
    "success_threshold",
    "failure_threshold",
    "status_mapping",
)


class CheckBase(Model):
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
    def _timing_fits(self) -> CheckBase:
        if self.start_period_seconds >= self.deadline_seconds:
            raise ValueError(
                f"start_period_seconds ({self.start_period_seconds:g}) must be shorter than "
                f"deadline_seconds ({self.deadline_seconds:g})"
            )
        return self


class PortCheck(CheckBase):
    """A probe that dials a port: the published host port of `port_key` (target "host", the default), or
    the container's own address on the domain network (target "network", for services that publish none)."""

    port_key: str | None = None
    target: Literal["host", "network"] = "host"


class TcpCheck(PortCheck):
    """Ready when a TCP connection to the published host port of `port_key` is accepted and kept open."""

    type: Literal["tcp"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class HttpCheck(PortCheck):
    """Ready when METHOD scheme://HOST:PORT{path} answers `expected_code` and every body condition holds."""

    type: Literal["http"]
    path: str = "/"
    method: Annotated[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], BeforeValidator(_upper)] = (
        "GET"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, description="request body to send (e.g. with POST)")
    scheme: Literal["http", "https"] = "http"
    tls_verify: bool = True
    follow_redirects: bool = False
    expected_code: Annotated[int | list[int] | str, AfterValidator(_check_codes)] = 200
    body_contains: str | None = None
    body_regex: Regex | None = None
    json_path: str | None = None
    json_value: object = Field(default=None, description="with json_path: the value the field must equal")

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
            raise ValueError('json_value needs json_path (the field to compare), e.g. "json_path": "$.status"')
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


class ExecCheck(CheckBase):
    """Ready when `command` run inside the container exits 0 (and its output matches, if asked)."""

    type: Literal["exec"]
    command: Annotated[str | list[str], AfterValidator(_command_ok)]
    output_contains: str | None = None
    output_regex: Regex | None = None

    def args(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class LogCheck(CheckBase):
    """Ready when `pattern` (a regular expression, matched per line) has appeared `count` times in the logs."""

    type: Literal["log"]
    pattern: Regex
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    stream: Literal["both", "stdout", "stderr"] = "both"


class DockerCheck(CheckBase):
    """Ready when the image's own HEALTHCHECK reports `healthy`; `unhealthy` is retried until the deadline."""

    type: Literal["docker"]


class SignalCheck(CheckBase):
    """Ready when the signal `signal` has truth value `tv` in the runtime state, typically written by the
    container itself into the runtime folder (mounted at /runtime with container `mount_runtime: true`)."""

    type: Literal["signal"]
    signal: SignalName
    tv: TruthValue = "Y"


class SocketCheck(PortCheck):
    """Ready when the server, after an optional `send`, answers with text matching `expect` (a regular
    expression) within `timeout_seconds`: redis (`PING` → `PONG`), SMTP/FTP/SSH banners, memcached `version`."""

    type: Literal["socket"]
    send: str | None = Field(default=None, description="text sent after connecting (escapes like \\r\\n as in JSON)")
    expect: Regex = Field(description="regular expression the reply must match")
    max_bytes: Annotated[int, Field(ge=1, le=1_048_576)] = 4096


class _CompositeCheck(CheckBase):
    checks: Annotated[list[HealthCheck], Field(min_length=1, max_length=32)]

    @field_validator("checks")
    @classmethod
    def _children_keep_no_timing(cls, value: list[HealthCheck]) -> list[HealthCheck]:
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


# The built-in kinds. Adding one: its model above, here, and its probe as one file in pnr/probes/.
BuiltinCheck = (
    TcpCheck | HttpCheck | ExecCheck | LogCheck | DockerCheck | SignalCheck | SocketCheck | AllCheck | AnyCheck
)


def _kind_of(model: type[BaseModel]) -> str:
    (kind,) = get_args(model.model_fields["type"].annotation)
    return str(kind)


BUILTIN_CHECKS: dict[str, type[CheckBase]] = {_kind_of(m): m for m in get_args(BuiltinCheck)}


class PluginCheck(CheckBase):
    """Base of third-party check models (entry point group `pnr.probes`): subclass it with
    `type: Literal["mykind"]` and your fields. Validation dispatches to the registered model."""

    # in the JSON Schema a plugin type excludes the built-in ones, or every tcp check would match two
    # branches of the health_check oneOf and no built-in check would validate in an editor
    type: Annotated[str, WithJsonSchema({"type": "string", "not": {"enum": list(BUILTIN_CHECKS)}})]

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: object, handler: ModelWrapValidatorHandler[PluginCheck]) -> PluginCheck:
        if cls is PluginCheck and isinstance(data, dict):
            model = PLUGINS.models().get(str(data.get("type")))
            if model is not None:
                return model.model_validate(data)
        return handler(data)


class PluginKinds:
    """Third-party probe kinds: type → (check model, probe implementation), loaded once per process from the
    entry points `pnr.probes` (name = type, value = a probe class with a `check_model`). A broken plugin is
    skipped with a warning and never breaks the built-in kinds. `pnr.probes.register_probe` adds one by hand."""

    def __init__(self) -> None:
        self._models: dict[str, type[PluginCheck]] = {}
        self._impls: dict[str, Any] = {}  # the probe classes (pnr.probes, a layer this one cannot name)
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, implementation: object, kind: str | None = None) -> str:
        """Register `implementation` (whose `check_model` validates the config); returns the kind."""
        model = getattr(implementation, "check_model", None)
        name = getattr(implementation, "__name__", repr(implementation))
        if not (isinstance(model, type) and issubclass(model, PluginCheck)):
            raise TypeError(f"{name}.check_model must be a subclass of pnr.model.PluginCheck")
        literal = get_args(model.model_fields["type"].annotation)
        if len(literal) != 1 or not isinstance(literal[0], str):
            raise TypeError(f"{model.__name__}.type must be declared as Literal['<kind>']")
        if kind is not None and kind != literal[0]:
            raise TypeError(f"entry point {kind!r} registers {model.__name__}, whose type is {literal[0]!r}")
        if literal[0] in BUILTIN_CHECKS:
            raise TypeError(f"probe type {literal[0]!r} is built in; a plugin cannot replace it")
        with self._lock:
            self._models[literal[0]] = model
            self._impls[literal[0]] = implementation
        return str(literal[0])

    def unregister(self, kind: str) -> None:
        with self._lock:
            self._models.pop(kind, None)
            self._impls.pop(kind, None)

    def load(self, reload: bool = False) -> None:
        with self._lock:
            if self._loaded and not reload:
                return
            self._loaded = True
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    self.register(ep.load(), ep.name)
                except Exception as exc:  # a broken plugin must not break pnr
                    warnings.warn(f"pnr probe plugin {ep.name!r} ({ep.value}) was not loaded: {exc}", stacklevel=2)

    def models(self) -> dict[str, type[PluginCheck]]:
        self.load()
        return dict(self._models)

    def implementation(self, kind: str) -> Any:
        self.load()
        return self._impls.get(kind)


ENTRY_POINT_GROUP = "pnr.probes"
PLUGINS = PluginKinds()


def check_kinds() -> list[str]:
    return [*BUILTIN_CHECKS, *sorted(k for k in PLUGINS.models() if k not in BUILTIN_CHECKS)]


def _check_tag(value: object) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    if kind in BUILTIN_CHECKS or isinstance(value, PluginCheck):
        return kind if kind in BUILTIN_CHECKS else "plugin"
    return "plugin" if kind in PLUGINS.models() else kind


if TYPE_CHECKING:
    HealthCheck = BuiltinCheck | PluginCheck
else:
    HealthCheck = Annotated[
        Union[(*(Annotated[m, Tag(k)] for k, m in BUILTIN_CHECKS.items()), Annotated[PluginCheck, Tag("plugin")])],
        Discriminator(_check_tag),
    ]
AllCheck.model_rebuild()
AnyCheck.model_rebuild()


def iter_checks(check: CheckBase) -> Iterator[CheckBase]:
    """The check and every check nested in it (all/any), depth first."""
    yield check
    for child in getattr(check, "checks", None) or ():
        yield from iter_checks(child)
