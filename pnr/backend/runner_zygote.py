"""The runner pool's leader where members are forked (Linux): one process that keeps pnr and Prefect imported,
answers pings, and forks a **worker** for a bring-up that finds no idle worker. It never runs a flow itself, so
it stays as small as right after its imports; a worker serves its own address like any member and ends after
PNR_RUNNER_IDLE_SECONDS without a connection, taking the memory its runs dirtied with it. At rest the pool is
this one process.

Single-threaded on purpose: a fork copies only the calling thread, so a lock another thread held would stay held
in the child forever. Signals reach the loop through a wakeup socket, so it sleeps until a client, a signal or a
worker's exit arrives: no polling.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pnr import processes
from pnr.backend import channel
from pnr.backend.protocol import encode

PEEK_BYTES = 1 << 20  # a request line longer than this is not pnr's
REQUEST_SECONDS = 5.0  # a client that connects sends its request at once


class Zygote:
    """The forking leader; `become_worker(index, (connection, address))` runs in the forked child."""

    def __init__(
        self,
        member: Any,
        state_dir: Path,
        become_worker: Callable[[int, tuple[Any, Any]], None],
        pong: Callable[[Any], dict[str, Any]],
    ) -> None:
        self.member = member  # its token and address (pnr.backend.runner_process.Member, index 0)
        self.state_dir = state_dir
        self.become_worker = become_worker
        self.pong = pong
        self.workers: dict[int, int] = {}  # index -> pid
        self.member.workers = []
        self._stopping = False

    def serve(self) -> None:
        """Accept connections until SIGTERM/SIGINT; then stop the workers and wait for them."""
        if sys.platform == "win32":  # no fork: such a pool spawns its members (PNR_RUNNER_START=spawn)
            raise OSError("the runner cannot fork on Windows")
        listener = cast(socketserver.TCPServer, channel.listen(self.member.transport, self.state_dir, 0, _Unused))
        wake_read, wake_write = socket.socketpair()
        for end in (wake_read, wake_write):
            end.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # a handler, so the wakeup socket hears of it
        selector = selectors.DefaultSelector()
        selector.register(listener.socket, selectors.EVENT_READ, "client")
        selector.register(wake_read, selectors.EVENT_READ, "signal")
        print(f"pnr runner {os.getpid()} (leader: forks workers, {self.member.transport}) for {self.member.api_url}")
        sys.stdout.flush()
        try:
            while not self._stopping:
                for key, _events in selector.select():
                    if key.data == "signal":
                        with contextlib.suppress(OSError):
                            wake_read.recv(4096)
                    else:
                        self._accept(listener, selector, (wake_read, wake_write))
                self._reap()
        finally:
            signal.set_wakeup_fd(-1)
            selector.close()
            listener.server_close()
            channel.unpublish(self.member.transport, self.state_dir, 0)
            self._end_workers()

    def _stop(self, _signum: int, _frame: Any) -> None:
        self._stopping = True

    def _accept(self, listener: Any, selector: selectors.BaseSelector, wake: tuple[socket.socket, ...]) -> None:
        try:
            conn, address = listener.socket.accept()
        except OSError:
            return
        try:
            conn.settimeout(REQUEST_SECONDS)
            line = _peek_line(conn)
            request = json.loads(line) if line else None
            if not isinstance(request, dict) or not channel.authentic(request, self.member.token):
                _consume(conn, len(line))  # unread bytes would turn a TCP close into a reset
                conn.close()
                return
            if request.get("op") == "ping":
                _consume(conn, len(line))
                self._reap()
                conn.sendall(encode(self.pong(self.member)))
                conn.close()
                return
        except (OSError, ValueError):
            conn.close()
            return
        self._fork(conn, address, listener, selector, wake)

    def _fork(
        self,
        conn: socket.socket,
        address: Any,
        listener: Any,
        selector: selectors.BaseSelector,
        wake: tuple[socket.socket, ...],
    ) -> None:
        """A worker for this connection (it reads the request itself: nothing of it was consumed here)."""
        if sys.platform == "win32":  # no fork: such a pool spawns its members (PNR_RUNNER_START=spawn)
            raise OSError("the runner cannot fork on Windows")
        if threading.active_count() > 1:  # never expected: the leader starts no thread
            print(f"{threading.active_count()} threads in the runner's leader: not forking", flush=True)
            conn.close()
            return
        index = next(i for i in range(1, len(self.workers) + 2) if i not in self.workers)
        die_with_leader = processes.die_with_parent(exit_code=0)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                if die_with_leader is not None:
                    die_with_leader()
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                selector.close()
                listener.socket.close()  # the leader's address stays the leader's
                for end in wake:
                    end.close()
                conn.settimeout(None)
                self.become_worker(index, (conn, address))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        conn.close()
        self.workers[index] = pid
        self._publish()

    def _reap(self) -> None:
        """Forget workers that ended (so a ping never lists a dead one)."""
        if sys.platform == "win32":  # no fork: such a pool spawns its members (PNR_RUNNER_START=spawn)
            raise OSError("the runner cannot fork on Windows")
        for index, pid in list(self.workers.items()):
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
            del self.workers[index]
        self._publish()

    def _publish(self) -> None:
        self.member.workers = sorted(self.workers)
        self.member.member_pids = [self.workers[i] for i in self.member.workers]

    def _end_workers(self, timeout: float = 35.0) -> None:
        """SIGTERM to the workers still running (their runs are interrupted and record how they ended), then
        SIGKILL to any left after `timeout`."""
        if sys.platform == "win32":  # no fork: such a pool spawns its members (PNR_RUNNER_START=spawn)
            raise OSError("the runner cannot fork on Windows")
        for pid in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
            self._reap()
        for pid in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _peek_line(conn: socket.socket) -> bytes:
    """The first line the client sent (with its newline), left unread; b"" if it sends none in time."""
    size, deadline = 4096, time.monotonic() + REQUEST_SECONDS
    while time.monotonic() < deadline:
        data = conn.recv(size, socket.MSG_PEEK)
        end = data.find(b"\n")
        if end >= 0:
            return data[: end + 1]
        if not data or len(data) >= PEEK_BYTES:
            return b""
        if len(data) >= size:
            size *= 4  # the line is longer than what was peeked
        else:
            time.sleep(0.001)  # the rest of the line is still on its way
    return b""


def _consume(conn: socket.socket, count: int) -> None:
    while count > 0:
        chunk = conn.recv(min(count, 65536))
        if not chunk:
            return
        count -= len(chunk)


class _Unused(socketserver.BaseRequestHandler):
    """The leader accepts on the listening socket itself; this handler is never called."""
