"""How `pnr up` reaches a runner member (pnr.backend.channel), over each transport: the member's real request
handler answers a ping that carries the state dir's token, and nothing without it. No Prefect is imported: a
ping needs none."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pnr.backend import channel, runner
from pnr.backend.runner_process import Member, Mode, member_server

TRANSPORTS = [
    "tcp",
    pytest.param("unix", marks=pytest.mark.skipif(not channel.has_unix_sockets(), reason="no AF_UNIX here")),
]


@pytest.fixture(params=TRANSPORTS)
def member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Member]:
    """Member 1 of a pool of two, serving in a thread on the transport; shut down after the test."""
    channel.new_token(tmp_path)
    mode = Mode(pool=2, start="spawn", transport=request.param)
    served = Member("http://127.0.0.1:1/api", "f1ng3r", channel.read_token(tmp_path), mode, index=1)
    server = member_server(served, tmp_path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        channel.unpublish(mode.transport, tmp_path, 1)
        thread.join(5)


def test_a_ping_with_the_token_is_answered(member: Member, tmp_path: Path) -> None:
    pong = runner.ping(runner.RunnerPaths(tmp_path, 1))
    assert pong is not None
    assert (pong["index"], pong["pool"], pong["fingerprint"]) == (1, 2, "f1ng3r")
    assert (pong["start"], pong["transport"]) == ("spawn", member.transport)
    published = channel.port_path(tmp_path, 1) if member.transport == "tcp" else channel.socket_path(tmp_path, 1)
    assert published.exists() and published.stat().st_mode & 0o777 == 0o600
    assert channel.token_path(tmp_path).stat().st_mode & 0o777 == 0o600
    if member.transport == "tcp":
        port = int(published.read_text())
        assert not (tmp_path / "runner-1.sock").exists()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            assert conn.getpeername()[0] == "127.0.0.1"


def test_nothing_is_answered_without_the_right_token(member: Member, tmp_path: Path) -> None:
    for token in ("", "0" * 64, channel.read_token(tmp_path)[:-1]):
        with channel.connect(tmp_path, 1, timeout=5) as conn:
            channel.send(conn, {"op": "ping", "token": token})
            assert conn.makefile("rb").readline() == b"", f"answered with token {token!r}"
    channel.new_token(tmp_path)  # another pool's secret: the running member keeps its own
    assert runner.ping(runner.RunnerPaths(tmp_path, 1)) is None


def test_no_address_no_answer(tmp_path: Path) -> None:
    assert runner.ping(runner.RunnerPaths(tmp_path, 0), timeout=1) is None
    with pytest.raises(OSError):
        channel.connect(tmp_path, 0, timeout=1)


def test_clear_removes_every_address(tmp_path: Path) -> None:
    for name in ("runner.sock", "runner-1.sock", "runner.port", "runner-3.port", "runner.log"):
        (tmp_path / name).write_text("")
    channel.clear(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["runner.log"]


def test_the_settings_choose_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from pnr.exceptions import ConfigError

    for name in ("PNR_RUNNER_START", "PNR_RUNNER_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    assert channel.transport() == ("unix" if channel.has_unix_sockets() else "tcp")
    assert runner.start_mode() == ("fork" if sys.platform.startswith("linux") else "spawn")
    monkeypatch.setenv("PNR_RUNNER_TRANSPORT", "TCP")
    monkeypatch.setenv("PNR_RUNNER_START", "spawn")
    assert (channel.transport(), runner.start_mode()) == ("tcp", "spawn")
    monkeypatch.setenv("PNR_RUNNER_START", "vfork")
    with pytest.raises(ConfigError, match=r"PNR_RUNNER_START.*fork or spawn"):
        runner.start_mode()
