"""What pnr asks of one Docker engine, as a Protocol: `ContainerEngine`, satisfied by the docker-py adapter
`Engine` and by the unit tests' fakes, with the plain records it answers in. What a caller hands the lifecycle
as "the engine" (one engine or a domain's engines) is an `EngineSource` (pnr.engines.engineset)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict

if TYPE_CHECKING:
    from pnr.model import DesignChunk


@dataclass(frozen=True)
class ContainerState:
    """A container as the engine reports it."""

    id: str
    name: str
    status: str  # created | running | exited | dead | ...
    running: bool
    exit_code: int | None
    labels: dict[str, str]


class NetworkInfo(TypedDict):
    """A network as the engine lists it (the keys pnr reads)."""

    Id: str
    Name: str


class LineStream(Protocol):
    """A followed container log: whole lines until it ends or `close()` is called from another thread."""

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


class ContainerEngine(Protocol):
    """One Docker engine behind the small surface the lifecycle, the probes and the checks use."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def port_ip(self) -> str: ...

    def describe(self) -> str: ...

    def ping(self) -> None: ...

    def is_local(self) -> bool: ...

    def probe_host(self, bind_ip: str) -> str: ...

    def published_ports(self, name_or_id: str) -> set[tuple[int, str]]: ...

    # networks, volumes, images
    def ensure_network(self, domain: str) -> str: ...

    def owned_networks(self, domain: str) -> list[NetworkInfo]: ...

    def remove_network(self, net_id: str, settle_seconds: float = 15.0) -> None: ...

    def owned_volumes(self, domain: str) -> list[str]: ...

    def remove_volume(self, name: str) -> None: ...

    def image_id(self, ref: str) -> str | None: ...

    def ensure_image(self, domain: str, chunk: DesignChunk, base_dir: Path, build: bool = False) -> str: ...

    # containers
    def inspect(self, name_or_id: str) -> ContainerState | None: ...

    def container_names(self) -> dict[str, tuple[str, dict[str, str]]]: ...

    def owned_containers(self, domain: str) -> list[ContainerState]: ...

    def create_and_start(
        self,
        *,
        domain: str,
        cpux: str,
        chunk: DesignChunk,
        image_id: str,
        config_hash: str,
        flow_run_id: str,
        network: str,
        base_dir: Path,
        env: dict[str, str],
        runtime_dir: Path | None = None,
        spec_label: str = "",
        config_file: str = "",
    ) -> ContainerState: ...

    def start(self, cid: str) -> None: ...

    def stop(self, cid: str, timeout: float | None = None) -> None: ...

    def remove(self, cid: str) -> None: ...

    # logs and what probes ask
    def logs_tail(self, cid: str, lines: int = 20) -> str: ...

    def logs_since(
        self, cid: str, *, since: float | None = None, tail: int | None = None, timestamps: bool = False
    ) -> list[str]: ...

    def logs_stream(
        self, cid: str, *, tail: int | None = None, timestamps: bool = False, since: float | None = None
    ) -> LineStream: ...

    def exec_run(self, cid: str, command: list[str]) -> tuple[int | None, str]: ...

    def logs_text(self, cid: str, stdout: bool = True, stderr: bool = True) -> str: ...

    def health(self, cid: str) -> tuple[str | None, str]: ...

    def container_ip(self, cid: str, network: str | None) -> str | None: ...
