"""The shapes the import reads and writes, as TypedDicts (both stay the dicts of a YAML or JSON document).

Read: a compose file's keys as the compose-spec schema (compose-spec.json) allows them, once the file has been
checked against it; only the keys the import reads are listed. Written: pnr's domain config, as the import
builds it for `pnr.parse_domain`.
"""

from __future__ import annotations

from typing import Required, TypedDict

from pnr.records import JsonObject, JsonValue

# -- a compose file (after the schema check) ------------------------------------------------------------------
Scalar = str | int | float | bool | None
ListOrDict = dict[str, Scalar] | list[str]  # compose's list_or_dict: {"A": "1"} or ["A=1"]
Command = str | list[str] | None


class BuildSpec(TypedDict, total=False):
    context: str
    dockerfile: str
    args: ListOrDict
    target: str


class HealthcheckSpec(TypedDict, total=False):
    disable: bool | str
    interval: str
    timeout: str
    start_period: str
    start_interval: str
    retries: int | float | str
    test: str | list[str]


class DependsOnSpec(TypedDict, total=False):
    condition: Required[str]
    required: bool
    restart: bool | str


class EnvFileSpec(TypedDict, total=False):
    path: Required[str]
    format: str
    required: bool | str


class MountSpec(TypedDict, total=False):
    """A `volumes` item in the long syntax."""

    type: Required[str]
    source: str
    target: str
    read_only: bool | str
    consistency: str
    bind: JsonObject
    volume: JsonObject
    tmpfs: JsonObject
    image: JsonObject


class PortSpec(TypedDict, total=False):
    """A `ports` item in the long syntax."""

    target: int | str
    published: int | str
    host_ip: str
    protocol: str
    mode: str
    name: str
    app_protocol: str


class FileGrant(TypedDict, total=False):
    """A service's `secrets` / `configs` item in the long syntax."""

    source: str
    target: str
    uid: str
    gid: str
    mode: int | float | str


class ExtendsSpec(TypedDict, total=False):
    service: Required[str]
    file: str


class ServiceSpec(TypedDict, total=False):
    """One service, its `extends` resolved."""

    image: str
    build: str | BuildSpec
    command: Command
    entrypoint: Command
    container_name: str
    working_dir: str
    user: str
    stop_signal: str
    init: bool | str
    stop_grace_period: str
    environment: ListOrDict
    env_file: str | list[str | EnvFileSpec]
    labels: ListOrDict
    label_file: str | list[str]
    ports: list[int | float | str | PortSpec]
    volumes: list[str | MountSpec]
    secrets: list[str | FileGrant]
    configs: list[str | FileGrant]
    depends_on: list[str] | dict[str, DependsOnSpec]
    healthcheck: HealthcheckSpec
    links: list[str]
    profiles: list[str]
    network_mode: str
    ipc: str
    pid: str | None
    uts: str
    cgroup: str
    volumes_from: list[str]
    extends: str | ExtendsSpec
    deploy: JsonObject | None
    provider: JsonObject


class ExternalSpec(TypedDict, total=False):
    name: str


class VolumeSpec(TypedDict, total=False):
    """A top-level volume."""

    name: str
    external: bool | str | ExternalSpec
    driver: str
    driver_opts: JsonObject
    labels: ListOrDict


class FileObjectSpec(TypedDict, total=False):
    """A top-level secret or config."""

    name: str
    file: str
    environment: str
    content: str
    external: bool | str | ExternalSpec


class ComposeSpec(TypedDict, total=False):
    """A compose project's merged document. `services` are as written: `resolve_extends` gives `ServiceSpec`s."""

    name: str
    version: str
    services: dict[str, JsonValue]
    volumes: dict[str, VolumeSpec | None]
    secrets: dict[str, FileObjectSpec]
    configs: dict[str, FileObjectSpec]
    networks: dict[str, JsonValue]
    models: dict[str, JsonValue]


# -- what the import writes: a pnr domain config --------------------------------------------------------------
class PnrDoc(TypedDict):
    """A signal's PnR: prompt, response and truth value."""

    prompt: str
    response: list[str]
    tv: str


class StatusDoc(TypedDict):
    key: str
    response: list[str]
    tv: str


class StatusMappingDoc(TypedDict):
    success: StatusDoc
    failure: StatusDoc


class ProbeDoc(TypedDict, total=False):
    """A chunk's `health_check`."""

    type: Required[str]
    command: list[str]
    interval_seconds: float
    timeout_seconds: float
    deadline_seconds: float
    start_period_seconds: float
    failure_threshold: int
    status_mapping: StatusMappingDoc


class ContainerDoc(TypedDict, total=False):
    """A chunk's `container`."""

    name: str
    image: str
    build_path: str
    dockerfile: str
    build_target: str
    build_args: dict[str, str]
    command: str | list[str]
    entrypoint: str | list[str]
    env: dict[str, str]
    ports: dict[str, str]
    volumes: list[str]
    labels: dict[str, str]
    working_dir: str
    user: str
    stop_signal: str
    init: bool
    stop_grace_period_seconds: float


class ChunkDoc(TypedDict, total=False):
    """A design chunk."""

    name: Required[str]
    kind: str
    gatekeeper: dict[str, PnrDoc]
    flowout: dict[str, PnrDoc]
    on_start: dict[str, PnrDoc]
    health_check: ProbeDoc
    container: ContainerDoc


class CpuxDoc(TypedDict):
    design_chunks: list[ChunkDoc]


class DomainDoc(TypedDict, total=False):
    """A domain config."""

    name: Required[str]
    env_files: list[str]
    cpuxs: dict[str, CpuxDoc]
