"""Host ports before any container starts: a published port that is taken is reported up front, naming the
chunk, the port and the fix — not half-way through a bring-up."""

from __future__ import annotations

import socket

from pnr.engines.engine import LABEL_CHUNK, LABEL_DOMAIN
from pnr.engines.protocol import ContainerEngine
from pnr.exceptions import EngineError
from pnr.model import DesignChunk


def host_port_problem(host_ip: str, port: int, protocol: str = "tcp") -> str | None:
    """None if `host_ip:port` can be bound on this machine now, else the reason (e.g. "Address already in use")."""
    ip = host_ip.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as sock:
            # like any server (docker-proxy too): connections of an earlier holder in TIME_WAIT do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def host_port_clashes(engine: ContainerEngine, domain: str, chunks: list[DesignChunk]) -> None:
    """EngineError listing every published host port that is taken (a port held by the chunk's own running
    pnr container is fine). Only for a local engine: a remote engine's ports are not ours to test (the
    start-time translation in `Engine.create_and_start` still names the port then)."""
    if not engine.is_local():
        return
    taken: list[str] = []
    for chunk in chunks:
        container = chunk.container
        bindings = container.port_bindings(engine.port_ip)
        if not bindings:
            continue
        own: set[tuple[int, str]] = set()
        existing = engine.inspect(container.name)
        if (
            existing is not None
            and existing.running
            and existing.labels.get(LABEL_DOMAIN) == domain
            and existing.labels.get(LABEL_CHUNK) == chunk.name
        ):
            own = engine.published_ports(existing.id)
        for key, b in bindings.items():
            if (b.host_port, b.protocol) in own:
                continue
            problem = host_port_problem(b.host_ip, b.host_port, b.protocol)
            if problem:
                taken.append(
                    f"chunk {chunk.name}: host port {b.host_ip}:{b.host_port}/{b.protocol} "
                    f"(container.ports {key!r} of {container.name}) is already in use ({problem})"
                )
    if taken:
        raise EngineError(
            "\n".join(taken) + "\n  nothing was started; stop what holds the port or change container.ports"
        )
