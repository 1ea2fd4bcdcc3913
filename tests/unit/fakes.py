"""The base of the unit tests' fake engines: the whole `ContainerEngine` surface, answering as an empty engine
(nothing found, nothing listed). A fake overrides what its test looks at; mypy checks this module against the
Protocol (scripts/check.sh)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from pnr.engines import ContainerState, EngineSet
from pnr.engines.engineset import EngineSource
from pnr.engines.protocol import ContainerEngine, LineStream, NetworkInfo
from pnr.model import DesignChunk, Plan


class _NoLines:
    def __iter__(self) -> Iterator[str]:
        return iter(())

    def close(self) -> None:
        pass


class FakeEngineBase:
    """An engine with no containers, networks, volumes or images; every chunk of a plan runs on it."""

    name = "default"  # the name an engine without one has in its set
    address = "127.0.0.1"
    port_ip = "127.0.0.1"

    def engine_set(self, plan: Plan) -> EngineSet:
        return EngineSet.single(self, plan)

    def describe(self) -> str:
        return f"engine {self.name}"

    def ping(self) -> None:
        pass

    def is_local(self) -> bool:
        return False

    def probe_host(self, bind_ip: str) -> str:
        return self.address

    def published_ports(self, name_or_id: str) -> set[tuple[int, str]]:
        return set()

    def ensure_network(self, domain: str) -> str:
        return f"pnr_{domain}"

    def owned_networks(self, domain: str) -> list[NetworkInfo]:
        return []

    def remove_network(self, net_id: str, settle_seconds: float = 15.0) -> None:
        pass

    def owned_volumes(self, domain: str) -> list[str]:
        return []

    def remove_volume(self, name: str) -> None:
        pass

    def image_id(self, ref: str) -> str | None:
        return None

    def ensure_image(self, domain: str, chunk: DesignChunk, base_dir: Path, build: bool = False) -> str:
        return "sha256:" + "0" * 64

    def inspect(self, name_or_id: str) -> ContainerState | None:
        return None

    def container_names(self) -> dict[str, tuple[str, dict[str, str]]]:
        return {}

    def owned_containers(self, domain: str) -> list[ContainerState]:
        return []

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
    ) -> ContainerState:
        raise NotImplementedError("this fake engine creates no containers")

    def start(self, cid: str) -> None:
        pass

    def stop(self, cid: str, timeout: float | None = None) -> None:
        pass

    def remove(self, cid: str) -> None:
        pass

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        return ""

    def logs_since(
        self, cid: str, *, since: float | None = None, tail: int | None = None, timestamps: bool = False
    ) -> list[str]:
        return []

    def logs_stream(
        self, cid: str, *, tail: int | None = None, timestamps: bool = False, since: float | None = None
    ) -> LineStream:
        return _NoLines()

    def exec_run(self, cid: str, command: list[str]) -> tuple[int | None, str]:
        return 0, ""

    def logs_text(self, cid: str, stdout: bool = True, stderr: bool = True) -> str:
        return ""

    def health(self, cid: str) -> tuple[str | None, str]:
        return None, ""

    def container_ip(self, cid: str, network: str | None) -> str | None:
        return None


_ONE: ContainerEngine = FakeEngineBase()  # mypy: a fake is an engine as the Protocol says
_SOURCE: EngineSource = FakeEngineBase()  # and may be handed to the lifecycle as "the engine"


_H = TypeVar("_H", bound=BaseHTTPRequestHandler)


@contextmanager
def stub_api(handler: type[_H]) -> Iterator[tuple[str, type[_H]]]:
    """A local HTTP server answering with a fresh subclass of `handler` (a test changes its class attributes):
    yields (its `/api` URL, that subclass), and stops it afterwards."""
    answering = type(handler.__name__, (handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", answering
    finally:
        server.shutdown()
        server.server_close()
