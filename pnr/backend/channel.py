"""How `pnr up` reaches a member of the runner pool, in one of two ways:

- unix: a socket file in the state dir (runner.sock, runner-1.sock, ...), mode 600;
- tcp: a port on 127.0.0.1 chosen by the system, written to runner.port, runner-1.port, ... in the state dir.

Either way every request carries the state dir's secret token (runner.token, mode 600, new for each pool), which
the member checks before it answers: on loopback TCP any local user could connect. unix is the default where the
platform has it; PNR_RUNNER_TRANSPORT chooses.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import sys
from pathlib import Path
from typing import Literal, TypedDict

from pnr.records import JsonValue

LOOPBACK = "127.0.0.1"
TRANSPORTS = ("unix", "tcp")


class Request(TypedDict, total=False):
    """A client's line to a member (pnr.backend.runner has the protocol): `op` says what is asked, and every
    request but an interrupt carries the pool's `token`."""

    op: Literal["ping", "up", "interrupt"]
    token: str
    args: dict[str, JsonValue]  # up: the bring-up's parameters (`UpRequest.flow_parameters`)
    env: dict[str, str]  # up: the environment `${VAR}`s are taken from
    pid: int  # up: the client's process
    shown_as: str | None  # up: the config's path as the user wrote it
    reason: str  # interrupt: why


def has_unix_sockets() -> bool:
    return hasattr(socket, "AF_UNIX")


def transport() -> str:
    """The transport a new pool uses: PNR_RUNNER_TRANSPORT, else unix where the platform has it, else tcp."""
    from pnr.settings import get_settings

    wanted = get_settings().runner_transport
    if wanted == "unix" and not has_unix_sockets():
        return "tcp"
    return wanted or ("unix" if has_unix_sockets() else "tcp")


def socket_path(state_dir: Path, index: int) -> Path:
    return state_dir / ("runner.sock" if index == 0 else f"runner-{index}.sock")


def port_path(state_dir: Path, index: int) -> Path:
    return state_dir / ("runner.port" if index == 0 else f"runner-{index}.port")


def token_path(state_dir: Path) -> Path:
    return state_dir / "runner.token"


def new_token(state_dir: Path) -> None:
    """A new secret for the pool about to start, readable by its owner only."""
    _write_private(token_path(state_dir), secrets.token_hex(32))


def read_token(state_dir: Path) -> str:
    try:
        return token_path(state_dir).read_text().strip()
    except OSError:
        return ""


def clear(state_dir: Path) -> None:
    """Remove every member's address (before a pool starts and after it stopped)."""
    for pattern in ("runner.sock", "runner-*.sock", "runner.port", "runner-*.port"):
        for path in state_dir.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# -- the client side ------------------------------------------------------------------------------------------


def connect(state_dir: Path, index: int, timeout: float) -> socket.socket:
    """A connection to member `index` over whichever transport its pool listens on (OSError if none answers)."""
    try:
        port = int(port_path(state_dir, index).read_text())
    except (OSError, ValueError):
        port = None
    if port is not None:
        return socket.create_connection((LOOPBACK, port), timeout=timeout)
    family = getattr(socket, "AF_UNIX", None)
    if family is None:
        raise ConnectionRefusedError(f"no runner listens for {state_dir}")
    conn = socket.socket(family, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(socket_path(state_dir, index)))
    except OSError:
        conn.close()
        raise
    return conn


def send(conn: socket.socket, message: Request) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


# -- the member side ------------------------------------------------------------------------------------------


def authentic(request: Request, token: str) -> bool:
    """The request carries the pool's token (compared in constant time)."""
    return bool(token) and hmac.compare_digest(str(request.get("token") or ""), token)


def listen(
    kind: str, state_dir: Path, index: int, handler: type[socketserver.BaseRequestHandler]
) -> socketserver.BaseServer:
    """A threading server for member `index` on `kind`, its address published in the state dir."""
    if kind == "tcp":
        tcp = _TcpServer((LOOPBACK, 0), handler)
        _write_private(port_path(state_dir, index), str(tcp.socket.getsockname()[1]))
        return tcp
    if sys.platform != "win32":
        path = socket_path(state_dir, index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        unix = _UnixServer(str(path), handler)
        os.chmod(path, 0o600)  # the runner starts containers: only its user may ask it to
        return unix
    raise OSError("unix sockets are not available here: use PNR_RUNNER_TRANSPORT=tcp")


def unpublish(kind: str, state_dir: Path, index: int) -> None:
    path = port_path(state_dir, index) if kind == "tcp" else socket_path(state_dir, index)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    request_queue_size = 64


if sys.platform != "win32":

    class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True
        request_queue_size = 64


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing the old one at once."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    os.replace(temporary, path)
