"""The resident runner: a pool of processes that keep pnr and Prefect imported next to pnr's Prefect server and
execute `pnr up`'s bring-up for it, so the command is a thin client. A run there is the same `pnr-up` flow run
(subflows, tasks, artifacts, events) as one in the client's own process. This module is the client's side and
starts the pool; pnr.backend.runner_process is the pool's side; pnr.backend.channel carries the requests.

Each member serves one request per connection, newline-delimited JSON, each with the pool's token;
`pnr up` picks the least busy member. Where members are forked (Linux), the leader runs nothing itself: it forks
a worker for a run that finds no idle one, and a worker ends once idle (pnr.backend.runner_zygote):

    {"op": "ping"}                                  → {"type": "pong", "pid", "fingerprint", "api_url", "active",
                                                       "index", "pool", "members", "stopping", "engine", "start",
                                                       "transport"}; a forking leader adds "workers" (their
                                                       indices) and "workers_max" (PNR_RUNNERS)
    {"op": "up", "args", "env", "pid", "shown_as"}  → {"type": "accepted", ...}, {"type": "event", ...}*,
                                                       {"type": "done", "ok", ...} (a bad config: only "done", exit 2)
    {"op": "interrupt", "reason"}                   on an "up" connection; closing the connection interrupts too

The client runs in-process instead when the runner cannot serve it the same way (another engine, another
Prefect API, other code). Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from pnr import processes
from pnr.backend import channel, daemon
from pnr.backend.protocol import UpRequest
from pnr.exceptions import PnrError
from pnr.locks import file_lock
from pnr.records import JsonValue

MARKER = "pnr.backend.runner_process"
START_TIMEOUT = 90.0  # importing Prefect on a busy 2-core machine


class EngineEnv(TypedDict):
    """The Docker engine an environment names (`Endpoint.identity`, or why none) and the docker CLI config."""

    endpoint: dict[str, object]
    docker_config: str


class Pong(TypedDict):
    """A member's answer to a ping."""

    type: Literal["pong"]
    pid: int
    fingerprint: str  # the code it runs (`code_fingerprint`)
    api_url: str
    active: int  # runs it executes now
    index: int  # its place in the pool (0: the leader)
    pool: int
    members: list[int]  # the leader's: the other members' pids
    stopping: list[str]  # keys of interrupted runs still ending
    engine: EngineEnv
    start: str
    transport: str
    workers: NotRequired[list[int]]  # a forking leader's: the indices of its live workers
    workers_max: NotRequired[int]  # a forking leader's: PNR_RUNNERS
    turn: int  # how many pings it answered before this one: clients that pick at once take turns by it


def engine_env(environ: Mapping[str, str] | None = None) -> EngineEnv:
    """The Docker engine an environment names, resolved as the docker CLI resolves it, and the docker CLI
    config its contexts come from: a client's must agree with the runner's, or the client runs in-process."""
    from pnr.engines.resolve import config_dir, resolve_endpoint

    try:
        endpoint = resolve_endpoint(environ).identity()
    except PnrError as exc:
        endpoint = {"error": str(exc)}
    return {"endpoint": endpoint, "docker_config": str(config_dir(environ))}


START_MODES = ("fork", "spawn")


class RunnerError(PnrError):
    """The resident runner could not be started or reached."""


@dataclass(frozen=True)
class RunnerPaths:
    state_dir: Path
    index: int = 0  # the pool member; the pid and log files are the pool's (member 0 leads it)

    def member(self, index: int) -> RunnerPaths:
        return RunnerPaths(self.state_dir, index)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "runner.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "runner.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "runner.lock"


def code_fingerprint() -> str:
    """Which pnr this is: the package's files (names, sizes, mtimes). A runner of other code is replaced."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def start_mode() -> str:
    """How a new pool starts its members: PNR_RUNNER_START, else fork on Linux (the members share the leader's
    imported pages) and spawn elsewhere (fork is missing on Windows and unsafe on macOS once threads exist)."""
    from pnr.settings import get_settings

    can_fork = sys.platform.startswith("linux") and hasattr(os, "fork")
    wanted = get_settings().runner_start
    if wanted == "fork" and not can_fork:
        return "spawn"
    return wanted or ("fork" if can_fork else "spawn")


# -- the client side ------------------------------------------------------------------------------------------


def ping(paths: RunnerPaths, timeout: float = 2.0) -> Pong | None:
    """The member's pong, or None when nothing answers at its address."""
    try:
        with channel.connect(paths.state_dir, paths.index, timeout) as conn:
            channel.send(conn, {"op": "ping", "token": channel.read_token(paths.state_dir)})
            line = conn.makefile("rb").readline()
    except OSError:
        return None
    try:
        answer: Pong = json.loads(line)  # a pong if it says so
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("type") == "pong" else None


def pool_size() -> int:
    """Processes of the runner pool: PNR_RUNNERS, else one per CPU core (at most 4)."""
    from pnr.settings import get_settings

    return get_settings().runners or max(1, min(os.cpu_count() or 1, 4))


def ensure_runner(state_dir: Path, api_url: str, timeout: float = START_TIMEOUT) -> Pong | None:
    """A runner pool for `api_url` running this very code: the one that answers, else a new one (also when a
    member died and nothing runs). None when the one that answers runs other code but is busy (the caller then
    runs in-process rather than wait). The pong of member 0."""
    paths = RunnerPaths(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = code_fingerprint()
    with file_lock(paths.lock_file):
        pong = ping(paths)
        if pong is not None:
            pool = pool_status(state_dir, pong)
            busy = any(p.get("active") for p in pool)
            if _serves(pong, fingerprint, api_url):
                # a member that does not answer yet may still be warming up: only a dead one needs a new pool
                members_alive = all(processes.alive(int(pid)) for pid in pong.get("members") or [])
                if len(pool) == pong.get("pool", 1) or busy or members_alive:
                    return pong
            elif busy:
                return None
            stop_runner(state_dir)
        else:
            _stop_recorded(paths)
        return _spawn(paths, api_url, fingerprint, timeout)


def ready_pool(state_dir: Path, api_url: str) -> Pong | None:
    """The pong of member 0 when a pool of this very code for `api_url` answers with every member alive (what
    `ensure_runner` would return without starting or replacing anything), else None."""
    pong = ping(RunnerPaths(state_dir))
    if pong is None or not _serves(pong, code_fingerprint(), api_url):
        return None
    return pong if all(processes.alive(int(pid)) for pid in pong.get("members") or []) else None


def _serves(pong: Pong, fingerprint: str, api_url: str) -> bool:
    """The pool runs this code for this API, started and reached as the settings ask now."""
    same_mode = pong.get("start") == start_mode() and pong.get("transport") == channel.transport()
    return same_mode and pong.get("fingerprint") == fingerprint and pong.get("api_url") == api_url


def pool_status(state_dir: Path, leader: Pong | None = None) -> list[Pong]:
    """The pongs of the pool's members that answer (member 0 first); [] when no runner runs."""
    paths = RunnerPaths(state_dir)
    leader = leader or ping(paths)
    if leader is None:
        return []
    # a forking leader names its live workers; a spawning one has members 1..pool-1
    indices = leader["workers"] if "workers" in leader else range(1, int(leader.get("pool") or 1))
    members = [ping(paths.member(int(i)), timeout=1.0) for i in indices]
    return [leader, *(p for p in members if p is not None)]


def pick(state_dir: Path, key: str) -> RunnerPaths:
    """The member a run of `key` (its config and runtime folder) goes to: the one still stopping an interrupted
    run of the same domain (it lets that end first), else the least busy one. A forking leader (`workers` in
    its pong) runs nothing itself: it gets the run, and forks a worker for it, when no worker is idle and the
    pool has room for another (PNR_RUNNERS), or when no worker runs at all."""
    pool = pool_status(state_dir)
    if not pool:
        return RunnerPaths(state_dir)
    same = [p for p in pool if key in (p.get("stopping") or [])]
    if same:
        return RunnerPaths(state_dir, int(same[0].get("index") or 0))
    forking = "workers" in pool[0]
    candidates = pool[1:] if forking else pool
    least = min((int(p.get("active") or 0) for p in candidates), default=0)
    room = forking and len(candidates) < int(pool[0].get("workers_max") or 1)
    if forking and (not candidates or (least > 0 and room)):
        return RunnerPaths(state_dir)
    idle = [p for p in candidates if int(p.get("active") or 0) == least]
    if room and least == 0:
        idle.append(pool[0])  # a new worker too: clients that ask at once do not all land on one idle worker
    # clients that ask at the same moment all see the same counts: they take turns among the least busy, each
    # by the leader's count of the pings it answered (one each, in the order they came)
    chosen = idle[int(pool[0].get("turn") or 0) % len(idle)]
    return RunnerPaths(state_dir, int(chosen.get("index") or 0))


def stop_runner(state_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop the runner (its runs are interrupted and end Failed, as on Ctrl-C); its pid, or None if none ran."""
    paths = RunnerPaths(state_dir)
    return _stop_recorded(paths, timeout)


def runner_status(state_dir: Path) -> Pong | None:
    return ping(RunnerPaths(state_dir))


def _spawn(paths: RunnerPaths, api_url: str, fingerprint: str, timeout: float) -> Pong:
    channel.clear(paths.state_dir)
    channel.new_token(paths.state_dir)
    env = dict(os.environ)
    env.update(PREFECT_API_URL=api_url, PNR_RUNNER_FINGERPRINT=fingerprint)
    command = [sys.executable, "-m", MARKER, "--state-dir", str(paths.state_dir), "--api-url", api_url]
    command += ["--pool", str(pool_size()), "--start", start_mode(), "--transport", channel.transport()]
    spawned = daemon.spawn_detached(command, env, paths.log_file)
    record = {"pid": spawned.pid, "created": processes.created(spawned.pid), "api_url": api_url}
    daemon.write_pid_file(paths.pid_file, record | {"fingerprint": fingerprint})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pong = ping(paths, timeout=1.0)
        if pong is not None:
            return pong
        if spawned.process.poll() is not None:
            tail = daemon.tail(paths.log_file, 20, spawned.log_offset)
            raise RunnerError(f"pnr's runner exited during start-up; last lines of {paths.log_file}:\n{tail}")
        time.sleep(0.05)
    processes.terminate(spawned.pid, 5)
    raise RunnerError(f"pnr's runner did not answer within {timeout:g}s (see {paths.log_file})")


def _stop_recorded(paths: RunnerPaths, timeout: float = 30.0) -> int | None:
    stopped = daemon.stop_recorded(paths.pid_file, MARKER, timeout)  # its process group: the whole pool
    channel.clear(paths.state_dir)
    return stopped


class RemoteRun:
    """One bring-up executed by the runner, seen from the client: `events()` yields the runner's lines (decoded
    JSON, `pnr.backend.protocol.from_message` reads them) until the outcome, which `outcome` then holds;
    `interrupt()` asks the runner to stop the run."""

    def __init__(
        self, state_dir: Path, request: UpRequest, env: Mapping[str, str], shown_as: str | None = None
    ) -> None:
        """`shown_as`: how the user wrote the config's path (`request` has it absolute); config errors name it so."""
        self._state_dir = state_dir
        self._send_lock = threading.Lock()
        self.outcome: dict[str, JsonValue] | None = None
        args = request.flow_parameters()
        self._request: channel.Request = {
            "op": "up",
            "args": args,
            "env": dict(env),
            "pid": os.getpid(),
            "shown_as": shown_as,
        }
        self._open(pick(state_dir, request.key).index)

    def _open(self, index: int) -> None:
        """Connect to member `index` and send the request; a worker that has just ended (idle) is replaced by
        the leader, which forks a fresh one."""
        try:
            self._connect(index)
        except OSError:
            if index == 0:
                raise
            self.close()
            self._connect(0)

    def _connect(self, index: int) -> None:
        self._index = index
        self._conn = channel.connect(self._state_dir, index, timeout=10.0)
        self._conn.settimeout(None)
        self._send({**self._request, "token": channel.read_token(self._state_dir)})

    def events(self) -> Iterator[dict[str, JsonValue]]:
        heard = False
        while True:
            with contextlib.suppress(ConnectionResetError):
                for line in self._conn.makefile("rb"):
                    heard = True
                    message: dict[str, JsonValue] = json.loads(line)
                    if message.get("type") == "done":
                        self.outcome = message
                        return
                    yield message
            if heard or self._index == 0:
                break
            # closed before a word: a worker that ended (idle) as this client connected; it started nothing
            self.close()
            self._open(0)
        raise RunnerError("pnr's runner went away during the run (see `pnr server logs`)")

    def interrupt(self, reason: str) -> bool:
        with contextlib.suppress(OSError):
            self._send({"op": "interrupt", "reason": reason})
            return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: never connected
            self._conn.close()

    def _send(self, message: channel.Request) -> None:
        with self._send_lock:
            channel.send(self._conn, message)
