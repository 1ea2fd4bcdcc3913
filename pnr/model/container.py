"""The container of a design chunk: image or build, ports, env, command, volumes, labels."""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pnr.model.fields import ContainerName, Model

EnvValues = list[str] | dict[str, str | int | float | bool]  # ["KEY=VALUE", ...] or {"KEY": value}


class PortBinding(Model):
    container_port: int
    protocol: Literal["tcp", "udp"]
    host_ip: str
    host_port: int


_HOST_RE = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):)?(?P<port>\d{1,5})$")
_CPORT_RE = re.compile(r"^(?P<port>\d{1,5})(?:/(?P<proto>tcp|udp))?$")
DEFAULT_HOST_IP = "127.0.0.1"


def parse_port(container_key: str, host_value: str | int, default_ip: str = DEFAULT_HOST_IP) -> PortBinding:
    """`"27017"` → `"27017"`, or `"8080/tcp"` → `"0.0.0.0:8080"`; host address defaults to `default_ip`."""
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
    ip = hmatch["ip"] or default_ip
    if ip == "localhost":
        ip = "127.0.0.1"
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise ValueError(f"host address {ip!r} in {host_value!r} is not an IP address") from None
    return PortBinding(container_port=cport, protocol=cmatch["proto"] or "tcp", host_ip=ip.strip("[]"), host_port=hport)


class VolumeSpec(NamedTuple):
    """One entry of `volumes`: a host path or a named volume, the path inside the container, ro/rw or None."""

    source: str
    target: str
    mode: str | None


_DRIVE_RE = re.compile(r"^[A-Za-z]:(?=[\\/])")  # C:\ or C:/ : a Windows drive, never a SOURCE:TARGET colon


def windows_drive(text: str) -> str:
    """`C:` when `text` starts with a Windows drive path (`C:\\src`, `C:/src`), else ''."""
    drive = _DRIVE_RE.match(text)
    return drive.group(0) if drive else ""


def split_volume(item: str) -> VolumeSpec:
    """`SOURCE:/target[:ro|rw]`; a SOURCE with a drive letter (`C:\\src`, `C:/src`) keeps its colon."""
    head = windows_drive(item)
    parts = item[len(head) :].split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise ValueError(f"volume {item!r} must look like 'SOURCE:/container/path[:ro|rw]'")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise ValueError(f"volume mode in {item!r} must be 'ro' or 'rw'")
    return VolumeSpec(head + parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def is_host_path(source: str) -> bool:
    """A bind source that is a path (relative, absolute, `~`, a Windows drive or UNC path), not a volume name."""
    return source.startswith((".", "/", "~", "\\")) or bool(windows_drive(source))


def host_path(source: str, base_dir: Path) -> str:
    """A host path of the config (bind source, build_path) as the engine needs it: `~` expanded, a relative
    path taken from the config's folder, absolute and normalised. A Windows drive path is kept as written on
    other systems (the engine on the Windows side reads it), resolved on Windows."""
    if os.name != "nt" and (windows_drive(source) or source.startswith("\\")):
        return source
    path = Path(os.path.expanduser(source))
    return str((path if path.is_absolute() else base_dir / path).resolve())


_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_STOP_GRACE_SECONDS = 3600
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


class ContainerSpec(Model):
    """One container: what to run and how to publish it."""

    name: ContainerName
    image: str | None = None
    ports: dict[str, StrictStr | StrictInt] = Field(default_factory=dict)
    env: EnvValues = Field(default_factory=dict)
    command: str | list[str] | None = None
    volumes: list[str] = Field(default_factory=list)
    build_path: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    mount_runtime: bool = Field(default=False, description="bind the runtime folder at /runtime (signal probes)")
    entrypoint: str | list[str] | None = Field(
        default=None, description="replaces the image's ENTRYPOINT; a string is split like a shell would (no shell)"
    )
    working_dir: str | None = Field(default=None, description="working directory inside the container (absolute)")
    user: str | None = Field(default=None, description="user[:group] the process runs as")
    dockerfile: str | None = Field(default=None, description="Dockerfile inside build_path (default: Dockerfile)")
    build_args: dict[str, str] = Field(default_factory=dict, description="--build-arg values of the build")
    build_target: str | None = Field(
        default=None, description="the Dockerfile stage to build (docker build --target; default: the last)"
    )
    init: bool = Field(
        default=False, description="run an init as PID 1 that forwards signals and reaps zombies (docker run --init)"
    )
    stop_signal: str | None = Field(default=None, description="signal that stops the container (default SIGTERM)")
    stop_grace_period_seconds: Annotated[float, Field(ge=0, le=MAX_STOP_GRACE_SECONDS)] | None = Field(
        default=None, description="how long `pnr down` waits after stop_signal before SIGKILL (default 5)"
    )

    @field_validator("ports")
    @classmethod
    def _ports_parse(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for key, host in value.items():
            parse_port(key, host)
        return value

    @field_validator("env")
    @classmethod
    def _env_shape(cls, value: EnvValues) -> EnvValues:
        keys = [item.split("=", 1)[0] for item in value] if isinstance(value, list) else list(value)
        if isinstance(value, list):
            bad = [item for item in value if "=" not in item]
            if bad:
                raise ValueError(f"env entry {bad[0]!r} must look like 'KEY=VALUE'")
        for key in keys:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute_dir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"working_dir {value!r} must be an absolute path inside the container")
        return value

    @field_validator("stop_signal")
    @classmethod
    def _signal_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(SIG[A-Z0-9+-]+|\d{1,2})$", value):
            raise ValueError(f"stop_signal {value!r} must be a signal name like 'SIGINT' or a number")
        return value

    @field_validator("command", "entrypoint")
    @classmethod
    def _command_splits(cls, value: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"{info.field_name} cannot be split into arguments: {exc}") from None
        if value is not None and not value:
            raise ValueError(f"{info.field_name} must not be empty (leave it out to use the image's default)")
        return value

    @field_validator("image")
    @classmethod
    def _image_ref(cls, value: str | None) -> str | None:
        if value is not None and value and not _IMAGE_RE.match(value):
            raise ValueError(
                f"image {value!r} is not a valid image reference (like 'redis:7' or 'registry:5000/team/app:1.2')"
            )
        return value

    @field_validator("volumes")
    @classmethod
    def _volume_shape(cls, value: list[str]) -> list[str]:
        for item in value:
            source = split_volume(item).source
            if not is_host_path(source) and not _VOLUME_NAME_RE.match(source):
                raise ValueError(
                    f"volume source {source!r} is neither a path (starting with '/', '.', '~' or a drive "
                    "like 'C:\\') nor a volume name (2+ letters, digits, '_', '.', '-')"
                )
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

    def port_bindings(self, default_ip: str = DEFAULT_HOST_IP) -> dict[str, PortBinding]:
        """Ports written without an address are published on `default_ip` (the chunk's engine decides)."""
        return {key: parse_port(key, host, default_ip) for key, host in self.ports.items()}

    def entrypoint_args(self) -> list[str] | None:
        """The entrypoint as an argument list (split like `command_args`)."""
        if self.entrypoint is None:
            return None
        return shlex.split(self.entrypoint) if isinstance(self.entrypoint, str) else list(self.entrypoint)

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
