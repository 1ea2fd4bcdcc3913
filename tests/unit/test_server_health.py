"""`pnr.backend.server._healthy`: the plain-socket `GET /api/health` every `pnr up` makes of pnr's server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from pnr.backend.server import _healthy
from tests.unit.fakes import stub_api


class _Api(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/api/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    with stub_api(_Api) as (url, handler):
        yield url, handler


def test_200_is_healthy_and_anything_else_is_not(api: tuple[str, type[_Api]]) -> None:
    url, handler = api
    assert _healthy(url)
    handler.status = 503
    assert not _healthy(url)
    assert not _healthy(url + "/elsewhere")  # 404


def test_nothing_listening_or_not_http_is_not_healthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not _healthy(f"http://127.0.0.1:{port}/api")  # refused

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_garbage() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        assert not _healthy(f"http://127.0.0.1:{listener.getsockname()[1]}/api", timeout=2)
    finally:
        listener.close()


def test_a_silent_listener_is_not_healthy_after_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts (the kernel's backlog) but never answers
        assert not _healthy(f"http://127.0.0.1:{listener.getsockname()[1]}/api", timeout=0.3)
