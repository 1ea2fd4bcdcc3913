"""A domain: CPUXs of design chunks, each a container with its gate, health check and flowout."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from pnr.model.checks import HealthCheck
from pnr.model.container import DEFAULT_HOST_IP, ContainerSpec, PortBinding
from pnr.model.engines import DEFAULT_ENGINE, EngineSpec
from pnr.model.fields import GatePnR, Model, Name, PnR, SignalName

MAX_CHUNKS = 1000  # per domain; far beyond one host's capacity, and keeps planning linear-ish


DependencyPolicy = Literal["ignore", "stop", "restart"]


class DesignChunk(Model):
    """One container, its gate, its readiness probe and the signals it promises."""

    name: Name
    gatekeeper: dict[SignalName, GatePnR] = Field(default_factory=dict)
    flowout: dict[SignalName, PnR] = Field(default_factory=dict)
    on_start: dict[SignalName, PnR] = Field(
        default_factory=dict,
        description="signals written as soon as the container runs, before its health check or job ends "
        "(compose's service_started); written N when a watch finds the container gone",
    )
    health_check: HealthCheck | None = None
    kind: Literal["service", "job"] = Field(
        default="service", description="service: ready by its health_check; job: completed when it exits 0"
    )
    container: ContainerSpec
    engine: Name | None = Field(
        default=None,
        description="the engine (a key of the domain's engines) this chunk runs on; default: the environment's",
    )
    on_dependency_lost: DependencyPolicy | None = Field(
        default=None,
        description="watch mode (pnr up --watch), when a gatekeeper signal stops holding: ignore (log only), stop "
        "(stop the container; start it again when the gate holds) or restart (keep it running; restart it when the "
        "gate holds again). Default: the domain's on_dependency_lost",
    )
    # Keys of earlier PnR configs: accepted so they load, and ignored.
    flowin: dict[str, object] | None = Field(default=None, description="legacy, ignored")
    status: str | None = Field(default=None, description="legacy, ignored")


class Cpux(Model):
    """A unit of execution: its chunks run in one Prefect flow run."""

    design_chunks: Annotated[list[DesignChunk], Field(min_length=1)]


class Domain(Model):
    """A whole config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"title": "pnr domain config"})

    name: Name
    cpuxs: Annotated[dict[Name, Cpux], Field(min_length=1)]
    engines: dict[Name, EngineSpec] = Field(
        default_factory=dict,
        description="Docker engines the chunks may run on (a chunk's `engine`); without: the environment's engine",
    )
    env_files: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="files of KEY=VALUE lines (compose's .env format), relative to this config file, that give "
        "${VAR} in container env its value; later files win, and the environment of pnr up wins over every file",
    )
    mount_runtime: bool = Field(default=False, description="mount the runtime folder at /runtime in every container")
    on_dependency_lost: DependencyPolicy = Field(
        default="ignore",
        description="default of every chunk's on_dependency_lost (watch mode)",
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

    def engine_of(self, chunk: DesignChunk) -> str:
        """The name of the engine a chunk runs on (`default`: the environment's)."""
        return chunk.engine or DEFAULT_ENGINE

    def port_ip(self, chunk: DesignChunk) -> str:
        """Where a chunk's ports written without an address are published: its engine's address when that is
        an IP address (see `EngineSpec.port_ip`), else 127.0.0.1."""
        spec = self.engines.get(chunk.engine or "")
        return spec.port_ip() if spec is not None else DEFAULT_HOST_IP

    def port_bindings(self, chunk: DesignChunk) -> dict[str, PortBinding]:
        """A chunk's published ports, on its engine (see `port_ip`)."""
        return chunk.container.port_bindings(self.port_ip(chunk))
