"""pnr.processes and pnr.backend.daemon with real processes: identity (a reused pid is never taken for pnr's),
liveness, stopping a process group, the port holder, pid files and logs. Every process started here is stopped
by its pid in a finally block."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pnr import processes
from pnr.backend import daemon

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
# a process that ignores SIGTERM, and a child of it that sleeps too (its process group has two members)
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); print('up', flush=True); "
    "time.sleep(300)",
]


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids to kill after the test, even when it fails."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for child in processes.children(pid):
            _kill(child)
        _kill(pid)


def _sleeper(started: list[int]) -> subprocess.Popen[bytes]:
    """A sleeping process, once it runs its own program (just after the fork it still shows this one's)."""
    sleeper = subprocess.Popen(SLEEPER)
    started.append(sleeper.pid)
    while not any("time.sleep(300)" in part for part in processes.cmdline(sleeper.pid)):
        assert sleeper.poll() is None
        time.sleep(0.02)
    return sleeper


def _kill(pid: int) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        process.kill()
        process.wait(5)
    except psutil.Error:
        pass


def test_alive_and_identity(started: list[int]) -> None:
    assert processes.alive(os.getpid())
    assert not processes.alive(0) and not processes.alive(-1)
    sleeper = _sleeper(started)
    created = processes.created(sleeper.pid)
    assert created is not None
    assert processes.runs(sleeper.pid, "time.sleep(300)", created)
    assert not processes.runs(sleeper.pid, "pnr.backend.runner_process", created), "another program's command"
    assert not processes.runs(sleeper.pid, "time.sleep(300)", created - 60), "a reused pid is not the process"
    assert processes.started_at(sleeper.pid, None) and processes.started_at(sleeper.pid, created)
    # the clock's synchronisation moves the boot time psutil adds (Linux) by whole seconds: still the process
    assert processes.started_at(sleeper.pid, created - 1.0) and processes.started_at(sleeper.pid, created + 1.0)
    assert not processes.started_at(sleeper.pid, created - 5.0), "a pid reused seconds later is not the process"
    sleeper.kill()
    sleeper.wait()
    assert not processes.alive(sleeper.pid) and processes.cmdline(sleeper.pid) == []


def test_an_exited_child_is_not_alive_and_is_reaped(started: list[int]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started.append(child.pid)
    while processes.alive(child.pid):  # a zombie until reaped: alive() reaps it and says no
        time.sleep(0.05)
    import psutil

    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE


def test_terminate_stops_the_process_group_and_kills_what_ignores_sigterm(tmp_path: Path, started: list[int]) -> None:
    log = tmp_path / "stubborn.log"
    spawned = daemon.spawn_detached(STUBBORN, dict(os.environ), log, header=["starting a stubborn process"])
    started.append(spawned.pid)
    while "up" not in log.read_text().splitlines():
        assert spawned.process.poll() is None, log.read_text()
        time.sleep(0.05)
    family = [spawned.pid, *processes.children(spawned.pid)]
    assert len(family) == 2
    assert processes.terminate(spawned.pid, timeout=0.5)
    spawned.process.wait(10)
    deadline = time.monotonic() + 10  # SIGKILL is delivered, and the orphan reaped by init, asynchronously
    while any(processes.alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(processes.alive(pid) for pid in family), "the group's other member survived"
    assert log.read_text().startswith("--- pnr: starting a stubborn process\n")
    assert daemon.tail(log, 1, spawned.log_offset) == "up"


def test_the_process_listening_on_a_port_is_named() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        holder = processes.listener_of(listener.getsockname()[1])
    assert holder is not None and holder.startswith(f"pid {os.getpid()} ("), holder


def test_a_pid_file_naming_another_program_never_gets_it_stopped(tmp_path: Path, started: list[int]) -> None:
    sleeper = _sleeper(started)
    pid_file = tmp_path / "runner.pid"
    daemon.write_pid_file(pid_file, {"pid": sleeper.pid, "created": processes.created(sleeper.pid)})
    assert pid_file.stat().st_mode & 0o777 == 0o600
    assert daemon.stop_recorded(pid_file, "pnr.backend.runner_process", timeout=1) is None
    assert sleeper.poll() is None and not pid_file.exists()
    daemon.write_pid_file(pid_file, {"pid": sleeper.pid, "created": processes.created(sleeper.pid)})
    assert daemon.stop_recorded(pid_file, "time.sleep(300)", timeout=5) == sleeper.pid
    assert sleeper.wait(10) is not None


def test_pid_files_that_cannot_be_read_are_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert daemon.read_pid_file(pid_file) is None
    pid_file.write_text("{not json")
    assert daemon.read_pid_file(pid_file) == {}
    pid_file.write_text(json.dumps([1, 2]))
    assert daemon.read_pid_file(pid_file) == {}
    assert daemon.stop_recorded(pid_file, "anything", timeout=1) is None and not pid_file.exists()


def test_a_log_past_its_limit_moves_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "server.log"
    log.write_text("old\n" * 10)
    monkeypatch.setattr(daemon, "LOG_ROTATE_BYTES", 16)
    daemon.rotate(log)
    assert not log.exists() and (tmp_path / "server.log.1").read_text().startswith("old\n")
    assert daemon.tail(log, 5) == ""
