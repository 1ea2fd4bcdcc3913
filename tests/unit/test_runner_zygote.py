"""The forking leader of the runner pool (pnr.backend.runner_zygote), for real: a process of its own answers
pings, forks a worker for any other request (the worker reads the request whole: the leader only peeked at it),
lists the worker while it lives, forgets it once it ended, and ends on SIGTERM. The worker here answers at once
instead of running a flow, so no Prefect is needed. Where a client goes (`runner.pick`) with fake pongs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pnr.backend import channel, runner
from pnr.backend.runner import Pong
from pnr.backend.runner_process import Member, Mode, pong

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the pool forks on Linux only")

LEADER = """
import json, os, sys
from pathlib import Path
from pnr.backend import channel
from pnr.backend.runner_process import Member, Mode, pong
from pnr.backend.runner_zygote import Zygote

state, transport = Path(sys.argv[1]), sys.argv[2]
member = Member("http://127.0.0.1:1/api", "f1ng3r", channel.read_token(state), Mode(2, "fork", transport))

def worker(index, first):
    conn, _address = first
    lines = conn.makefile("rb")
    request = json.loads(lines.readline())
    pad = len(request.get("pad", ""))
    answer = {"type": "done", "index": index, "pid": os.getpid(), "op": request["op"], "pad": pad}
    conn.sendall(json.dumps(answer).encode() + b"\\n")
    lines.readline()  # lives until the client says goodbye

Zygote(member, state, worker, pong).serve()
"""


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g}s: {what}")


@pytest.fixture(params=["unix", "tcp"])
def leader(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    channel.new_token(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", LEADER, str(tmp_path), request.param], start_new_session=True, stdin=subprocess.DEVNULL
    )
    try:
        _wait(lambda: runner.ping(runner.RunnerPaths(tmp_path)), "the leader answers a ping")
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the leader and any worker of it
        process.wait(10)


def test_the_leader_forks_a_worker_per_request_and_forgets_it_once_ended(
    leader: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    paths = runner.RunnerPaths(tmp_path)
    pong = runner.ping(paths)
    assert pong is not None and (pong["workers"], pong["members"], pong["pool"]) == ([], [], 1)
    with channel.connect(tmp_path, 0, timeout=10) as conn:
        pad = "x" * 20_000  # longer than one peek: the worker still reads the whole line
        channel.send(conn, {"op": "up", "token": channel.read_token(tmp_path), "pad": pad})
        answer = json.loads(conn.makefile("rb").readline())
        assert (answer["op"], answer["pad"], answer["index"]) == ("up", len(pad), 1)
        assert answer["pid"] != leader.pid
        busy = runner.ping(paths)
        assert busy is not None and (busy["workers"], busy["members"], busy["pool"]) == ([1], [answer["pid"]], 2)
        conn.sendall(b"bye\n")
    _wait(lambda: (p := runner.ping(paths)) is not None and p["workers"] == [], "the ended worker is forgotten")
    leader.send_signal(signal.SIGTERM)
    assert leader.wait(30) == 0
    assert not list(tmp_path.glob("runner.sock")) and not list(tmp_path.glob("runner.port"))


def test_the_leader_answers_nothing_without_the_token(leader: subprocess.Popen[bytes], tmp_path: Path) -> None:
    with channel.connect(tmp_path, 0, timeout=10) as conn:
        channel.send(conn, {"op": "up", "token": "0" * 64, "pad": ""})
        assert conn.makefile("rb").readline() == b""
    pong = runner.ping(runner.RunnerPaths(tmp_path))
    assert pong is not None and pong["workers"] == []


class _Request:
    key = "k"

    def flow_parameters(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("worker", ["gone", "closing"])
def test_a_run_sent_to_a_worker_that_just_ended_goes_to_the_leader(
    worker: str, leader: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pick` chose worker 1, which ended meanwhile: its address is gone (connect fails), or it still accepted
    the connection and closed it unanswered. Either way the run goes to the leader, which forks a fresh worker."""
    import socket
    import threading

    if worker == "closing":
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(channel.socket_path(tmp_path, 1)))
        listening.listen()

        def close_unanswered() -> None:
            conn, _ = listening.accept()
            conn.close()

        threading.Thread(target=close_unanswered, daemon=True).start()
    monkeypatch.setattr(runner, "pick", lambda _state_dir, _key: runner.RunnerPaths(tmp_path, 1))
    remote = runner.RemoteRun(tmp_path, _Request(), {})  # type: ignore[arg-type]
    try:
        assert list(remote.events()) == []
        assert remote.outcome is not None and remote.outcome["index"] == 1 and remote.outcome["pid"] != leader.pid
    finally:
        remote.close()
        if worker == "closing":
            listening.close()


def _pong(index: int, active: int, **extra: Any) -> dict[str, Any]:
    return {"type": "pong", "index": index, "active": active, "stopping": [], **extra}


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        ([], 0),  # none yet: the leader forks one
        ([_pong(1, 1)], 0),  # the only worker is busy and the pool has room: a second one
        ([_pong(1, 1), _pong(2, 0)], 2),  # an idle worker
        ([_pong(1, 2), _pong(2, 1)], 2),  # the pool is full: the least busy
        ([_pong(1, 0, stopping=["k"]), _pong(2, 0)], 1),  # the one still stopping this domain's run
    ],
)
def test_a_run_goes_to_an_idle_worker_else_to_the_leader_while_the_pool_has_room(
    workers: list[dict[str, Any]], expected: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    leader = _pong(0, 0, workers=[w["index"] for w in workers], workers_max=2)
    monkeypatch.setattr(runner, "pool_status", lambda _state_dir: [leader, *workers])
    assert runner.pick(tmp_path, "k").index == expected


def test_clients_at_once_take_turns_between_an_idle_worker_and_a_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each client's ping of the leader gets the next turn (the count of pings the leader answered)."""
    member = Member("http://127.0.0.1:1/api", "f", "t", Mode(2, "fork", "unix"))
    member.workers, member.workers_max = [1], 2

    def status(_state_dir: Path) -> list[Pong]:
        leader = pong(member)  # as the leader answers each ping: its own turn
        return [leader, _pong(1, 0)]

    monkeypatch.setattr(runner, "pool_status", status)
    assert [runner.pick(tmp_path, "k").index for _ in range(4)] == [1, 0, 1, 0]


def test_a_member_is_idle_only_with_no_connection_and_no_run() -> None:
    member = Member("http://127.0.0.1:1/api", "f", "t", Mode(1, "fork", "unix"), index=1)
    member.opened()
    assert member.idle_seconds() == 0.0
    member.closed()
    time.sleep(0.01)
    assert member.idle_seconds() > 0.0
    member.started(object(), key="k")
    assert member.idle_seconds() == 0.0
