"""The resident runner: a pool of processes that keep pnr and Prefect imported next to pnr's Prefect server and
execute `pnr up`'s bring-up for it, so the command is a thin client. A run here is the same `pnr-up` flow run
(subflows, tasks, artifacts, events) as one in the client's own process.

Each member serves one connection per request, newline-delimited JSON; `pnr up` picks the least busy member:

    {"op": "ping"}                                  → {"type": "pong", "pid", "fingerprint", "api_url", "active",
                                                       "index", "pool", "members", "stopping", "engine"}
    {"op": "up", "args", "env", "pid", "shown_as"}  → {"type": "accepted", ...}, {"type": "event", ...}*,
                                                       {"type": "done", "ok", ...} (a bad config: only "done", exit 2)
    {"op": "interrupt", "reason"}                   on an "up" connection; closing the connection interrupts too

The client runs in-process instead when the runner cannot serve it the same way (another engine, another
Prefect API, other code). Only the standard library is imported at module level; `serve()` imports Prefect.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from pnr.backend import daemon
from pnr.backend.protocol import UpRequest
from pnr.exceptions import PnrError
from pnr.processes import die_with_parent
from pnr.settings import quiet_prefect_env

MARKER = "pnr.backend.runner"
START_TIMEOUT = 90.0  # importing Prefect on a busy 2-core machine


def engine_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Docker engine an environment names, resolved as the docker CLI resolves it, and the docker CLI
    config its contexts come from: a client's must agree with the runner's, or the client runs in-process."""
    from pnr.engines.resolve import config_dir, resolve_endpoint

    try:
        endpoint: Any = resolve_endpoint(environ).identity()
    except PnrError as exc:
        endpoint = {"error": str(exc)}
    return {"endpoint": endpoint, "docker_config": str(config_dir(environ))}


class RunnerError(PnrError):
    """The resident runner could not be started or reached."""


@dataclass(frozen=True)
class RunnerPaths:
    state_dir: Path
    index: int = 0  # the pool member; the pid and log files are the pool's (member 0 leads it)

    @property
    def socket(self) -> Path:
        return self.state_dir / ("runner.sock" if self.index == 0 else f"runner-{self.index}.sock")

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

    @property
    def turn_file(self) -> Path:
        return self.state_dir / "runner.turn"


def code_fingerprint() -> str:
    """Which pnr this is: the package's files (names, sizes, mtimes). A runner of other code is replaced."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# -- the client side ------------------------------------------------------------------------------------------


def ping(paths: RunnerPaths, timeout: float = 2.0) -> dict[str, Any] | None:
    """The runner's pong, or None when nothing answers on its socket."""
    try:
        with _connect(paths, timeout) as conn:
            _send(conn, {"op": "ping"})
            line = conn.makefile("rb").readline()
    except OSError:
        return None
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("type") == "pong" else None


def pool_size() -> int:
    """Processes of the runner pool: PNR_RUNNERS, else one per CPU core (at most 4)."""
    from pnr.settings import get_settings

    return get_settings().runners or max(1, min(os.cpu_count() or 1, 4))


def ensure_runner(state_dir: Path, api_url: str, timeout: float = START_TIMEOUT) -> dict[str, Any] | None:
    """A runner pool for `api_url` running this very code: the one that answers, else a new one (also when a
    member died and nothing runs). None when the one that answers runs other code but is busy (the caller then
    runs in-process rather than wait). The pong of member 0."""
    paths = RunnerPaths(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = code_fingerprint()
    with _locked(paths.lock_file):
        pong = ping(paths)
        if pong is not None:
            pool = pool_status(state_dir, pong)
            busy = any(p.get("active") for p in pool)
            if pong.get("fingerprint") == fingerprint and pong.get("api_url") == api_url:
                # a member that does not answer yet may still be warming up: only a dead one needs a new pool
                members_alive = all(daemon.alive(int(pid)) for pid in pong.get("members") or [])
                if len(pool) == pong.get("pool", 1) or busy or members_alive:
                    return pong
            elif busy:
                return None
            stop_runner(state_dir)
        else:
            _stop_recorded(paths)
        return _spawn(paths, api_url, fingerprint, timeout)


def ready_pool(state_dir: Path, api_url: str) -> dict[str, Any] | None:
    """The pong of member 0 when a pool of this very code for `api_url` answers with every member alive (what
    `ensure_runner` would return without starting or replacing anything), else None."""
    pong = ping(RunnerPaths(state_dir))
    if pong is None or pong.get("api_url") != api_url or pong.get("fingerprint") != code_fingerprint():
        return None
    return pong if all(daemon.alive(int(pid)) for pid in pong.get("members") or []) else None


def pool_status(state_dir: Path, leader: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The pongs of the pool's members that answer (member 0 first); [] when no runner runs."""
    paths = RunnerPaths(state_dir)
    leader = leader or ping(paths)
    if leader is None:
        return []
    members = [ping(paths.member(i), timeout=1.0) for i in range(1, int(leader.get("pool") or 1))]
    return [leader, *(p for p in members if p is not None)]


def pick(state_dir: Path, key: str) -> RunnerPaths:
    """The member a run of `key` (its config and runtime folder) goes to: the one still stopping an interrupted
    run of the same domain (it lets that end first), else the least busy one."""
    pool = pool_status(state_dir)
    if not pool:
        return RunnerPaths(state_dir)
    same = [p for p in pool if key in (p.get("stopping") or [])]
    if same:
        return RunnerPaths(state_dir, int(same[0].get("index") or 0))
    least = min(int(p.get("active") or 0) for p in pool)
    idle = [p for p in pool if int(p.get("active") or 0) == least]
    # clients that ask at the same moment all see the same counts: take turns among the least busy
    chosen = idle[_next_turn(RunnerPaths(state_dir).turn_file) % len(idle)]
    return RunnerPaths(state_dir, int(chosen.get("index") or 0))


def _next_turn(path: Path) -> int:
    """A counter shared by every client of this state dir (read and incremented under its lock)."""
    with _locked(path.with_name(path.name + ".lock")):  # its own lock: not the one held while a pool starts
        try:
            turn = int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            turn = 0
        path.write_text(str(turn + 1))
        return turn


def stop_runner(state_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop the runner (its runs are interrupted and end Failed, as on Ctrl-C); its pid, or None if none ran."""
    paths = RunnerPaths(state_dir)
    return _stop_recorded(paths, timeout)


def runner_status(state_dir: Path) -> dict[str, Any] | None:
    return ping(RunnerPaths(state_dir))


def _spawn(paths: RunnerPaths, api_url: str, fingerprint: str, timeout: float) -> dict[str, Any]:
    _unlink_sockets(paths.state_dir)
    env = dict(os.environ)
    env.update(PREFECT_API_URL=api_url, PNR_RUNNER_FINGERPRINT=fingerprint)
    command = [sys.executable, "-m", MARKER, "--state-dir", str(paths.state_dir), "--api-url", api_url]
    command += ["--pool", str(pool_size())]
    offset = paths.log_file.stat().st_size if paths.log_file.exists() else 0
    pid = daemon.spawn_detached(command, env, paths.log_file)
    paths.pid_file.write_text(json.dumps({"pid": pid, "api_url": api_url, "fingerprint": fingerprint}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pong = ping(paths, timeout=1.0)
        if pong is not None:
            return pong
        if not daemon.alive(pid):
            tail = _tail(paths.log_file, offset)
            raise RunnerError(f"pnr's runner exited during start-up; last lines of {paths.log_file}:\n{tail}")
        time.sleep(0.05)
    daemon.terminate(pid, 5)
    raise RunnerError(f"pnr's runner did not answer within {timeout:g}s (see {paths.log_file})")


def _stop_recorded(paths: RunnerPaths, timeout: float = 30.0) -> int | None:
    try:
        pid = int(json.loads(paths.pid_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stopped = None
    if daemon.runs(pid, MARKER):
        daemon.terminate(pid, timeout)  # its process group: the whole pool
        stopped = pid
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file.unlink()
    _unlink_sockets(paths.state_dir)
    return stopped


def _unlink_sockets(state_dir: Path) -> None:
    for path in [*state_dir.glob("runner-*.sock"), state_dir / "runner.sock"]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class RemoteRun:
    """One bring-up executed by the runner, seen from the client: `events()` yields the run's events (dicts)
    until the outcome, which `outcome` then holds; `interrupt()` asks the runner to stop the run."""

    def __init__(
        self, state_dir: Path, request: UpRequest, env: Mapping[str, str], shown_as: str | None = None
    ) -> None:
        """`shown_as`: how the user wrote the config's path (`request` has it absolute); config errors name it so."""
        self._conn = _connect(pick(state_dir, request.key), timeout=10.0)
        self._conn.settimeout(None)
        self._send_lock = threading.Lock()
        self.outcome: dict[str, Any] | None = None
        args = request.flow_parameters()
        self._send({"op": "up", "args": args, "env": dict(env), "pid": os.getpid(), "shown_as": shown_as})

    def events(self) -> Iterator[dict[str, Any]]:
        for line in self._conn.makefile("rb"):
            message = json.loads(line)
            if message.get("type") == "done":
                self.outcome = message
                return
            yield message
        raise RunnerError("pnr's runner went away during the run (see `pnr server logs`)")

    def interrupt(self, reason: str) -> bool:
        with contextlib.suppress(OSError):
            self._send({"op": "interrupt", "reason": reason})
            return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()

    def _send(self, message: Mapping[str, Any]) -> None:
        with self._send_lock:
            _send(self._conn, message)


# -- the runner process -----------------------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._write_lock = threading.Lock()  # events come from the run's task threads
        self._plan: Any = None  # the run's plan, as checked before the run

    def handle(self) -> None:
        line = self.rfile.readline()
        try:
            request = json.loads(line)
        except ValueError:
            return
        if request.get("op") == "ping":
            self._write(
                {
                    "type": "pong",
                    "pid": os.getpid(),
                    "fingerprint": self.server.fingerprint,
                    "api_url": self.server.api_url,
                    "active": self.server.active,
                    "index": self.server.index,
                    "pool": self.server.pool,
                    "members": self.server.member_pids,
                    "stopping": self.server.stopping(),
                    "engine": engine_env(),
                }
            )
        elif request.get("op") == "up":
            self._bring_up(
                request.get("args") or {}, request.get("env") or {}, request.get("pid"), request.get("shown_as")
            )

    def _write(self, message: Mapping[str, Any]) -> None:
        with self._write_lock:
            self.wfile.write(json.dumps(message, default=str).encode() + b"\n")
            self.wfile.flush()

    def _bring_up(self, args: dict[str, Any], env: dict[str, str], pid: int | None, shown_as: str | None) -> None:
        from pnr.exceptions import ConfigError
        from pnr.lifecycle import RunControl, use_control
        from pnr.model import check_config
        from pnr.prefect.flows import bring_up, quiet_prefect_run

        try:  # first of all, and without a flow run: a bad config is exit 2 with nothing started
            plan = check_config(args["config_path"], env, shown_as, args.get("env_files") or ())
            plan.cpuxs_to_run(args.get("cpux"), shown_as or args["config_path"])
        except ConfigError as exc:
            with contextlib.suppress(OSError):
                self._write({"type": "done", "ok": False, "error": "ConfigError", "message": str(exc), "exit": 2})
            return
        n = len(plan.chunks)
        with contextlib.suppress(OSError):  # the client prints its header from this (it never loads the config)
            self._write(
                {"type": "accepted", "domain": plan.domain.name, "chunks": n, "cpuxs": plan.cpux_order}
                | {"engines": bool(plan.domain.engines)}
            )
        self._plan = plan
        control = RunControl(environ=env, owner_pid=pid)
        self._detached = False
        control.listen(lambda event: self._event(event, control, args))
        watcher = threading.Thread(target=self._watch_client, args=(control,), daemon=True)
        watcher.start()
        # an interrupted run of the same domain (its client died or pressed Ctrl-C) finishes first
        self.server.started(control, key=UpRequest.from_json(args).key)
        outcome: dict[str, Any]
        try:
            with quiet_prefect_run(), use_control(control), self.server.shared_client():
                result = bring_up(**args)
            outcome = {"type": "done", "ok": True, "result": result}
        except BaseException as exc:
            code = exc.exit_status if isinstance(exc, PnrError) else 1
            outcome = {"type": "done", "ok": False, "error": type(exc).__name__, "message": str(exc), "exit": code}
        finally:
            self.server.finished(control)
        if self._detached:  # the client has its outcome already (see _event): the rest was bookkeeping
            return
        outcome["flow_run_id"] = control.flow_run_id
        outcome["interrupted"] = control.interrupted
        with contextlib.suppress(OSError):
            self._write(outcome)

    def _event(self, event: Any, control: Any, args: dict[str, Any]) -> None:
        if getattr(event, "what", None) == "up.outcome":  # every chunk is ready: tell the client now
            self._done_early(event.payload["result"], control, args)
            return
        data = asdict(event) if is_dataclass(event) and not isinstance(event, type) else {"value": str(event)}
        with contextlib.suppress(OSError):  # the client went away: its watcher interrupts the run
            self._write({"type": "event", "kind": type(event).__name__, **data})

    def _done_early(self, result: dict[str, Any], control: Any, args: dict[str, Any]) -> None:
        """The outcome is known: send it, with the status table, while the flow run finishes its bookkeeping
        (artifacts, events, final state) here — nothing the user waits for, and none of it lost."""
        outcome: dict[str, Any] = {"type": "done", "ok": True, "result": result, "flow_run_id": control.flow_run_id}
        with contextlib.suppress(Exception):  # the client computes the table itself without it
            from pnr.engines import Engine
            from pnr.lifecycle import domain_status

            status = domain_status(self._plan, Engine(), Path(args["runtime_dir"]), _ready(result))
            outcome["summary"] = status.to_json()
        self._detached = True
        with contextlib.suppress(OSError):
            self._write(outcome)

    def _watch_client(self, control: Any) -> None:
        """Interrupt requests from the client; a closed connection interrupts too (unless it has its outcome)."""
        for line in self.rfile:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("op") == "interrupt":
                    control.interrupt(str(message.get("reason") or "interrupted (Ctrl-C)"))
        if not self._detached:
            control.interrupt("the pnr up client went away")


def _ready(result: dict[str, Any]) -> dict[str | None, Any]:
    """The containers of a bring-up's result (every chunk ready, so running), by chunk: its status table
    needs no engine listing."""
    from pnr.engines import ContainerState

    return {
        chunk: ContainerState(row["container_id"], row["container"], "running", True, None, {})
        for chunks in result.get("cpuxs", {}).values()
        for chunk, row in chunks.items()
        if row.get("phase") == "ready" and row.get("container_id")
    }


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, api_url: str, fingerprint: str, index: int = 0, pool: int = 1) -> None:
        super().__init__(str(path), _Handler)
        self.api_url = api_url
        self.fingerprint = fingerprint
        self.index, self.pool = index, pool
        self.member_pids: list[int] = []  # the leader's forked members
        self._runs: list[tuple[Any, str, threading.Event]] = []  # (control, domain key, done)
        self._guard = threading.Lock()
        self.client_context: Any = None  # one Prefect client (connection pool, TLS context) for every run

    @contextlib.contextmanager
    def shared_client(self) -> Iterator[None]:
        """Let this thread's flow runs use the runner's one open Prefect client instead of building their own
        (a new client costs ~0.2 s of CPU, mostly its TLS context, even for an http:// API)."""
        if self.client_context is None:
            yield
            return
        token = type(self.client_context).__var__.set(self.client_context)
        try:
            yield
        finally:
            type(self.client_context).__var__.reset(token)

    @property
    def active(self) -> int:
        return len(self._runs)

    def stopping(self) -> list[str]:
        """Keys of runs that were interrupted and are still ending."""
        with self._guard:
            return sorted({k for c, k, _done in self._runs if c.interrupted})

    def started(self, control: Any, key: str, wait: float = 60.0) -> None:
        """Count the run; first let an interrupted run of the same domain end (it is stopping already: two runs
        of one domain must not overlap after a client died). A live one is not waited for, as in-process."""
        with self._guard:
            earlier = [(c, done) for c, k, done in self._runs if k == key and c.interrupted]
        deadline = time.monotonic() + wait
        for _control, done in earlier:
            done.wait(max(0.0, deadline - time.monotonic()))
        with self._guard:
            self._runs.append((control, key, threading.Event()))

    def finished(self, control: Any) -> None:
        with self._guard:
            for entry in [e for e in self._runs if e[0] is control]:
                entry[2].set()
                self._runs.remove(entry)

    def interrupt_all(self, reason: str) -> None:
        with self._guard:
            controls = [c for c, _key, _done in self._runs]
        for control in controls:
            control.interrupt(reason)


def serve(state_dir: Path, api_url: str, pool: int = 1) -> None:
    """The runner's main loop: import Prefect once, fork the pool, then serve bring-ups until SIGTERM."""
    import signal

    os.environ["PREFECT_API_URL"] = api_url
    for key, value in quiet_prefect_env().items():
        os.environ.setdefault(key, value)
    _import_for_runs()
    index, children = _fork_pool(pool)
    _warm_up()

    paths = RunnerPaths(state_dir, index)
    with contextlib.suppress(FileNotFoundError):
        paths.socket.unlink()
    fingerprint = os.environ.get("PNR_RUNNER_FINGERPRINT") or code_fingerprint()
    server = _Server(paths.socket, api_url, fingerprint, index, pool)
    server.member_pids = children
    server.client_context = _open_client_context()
    os.chmod(paths.socket, 0o600)  # the runner starts containers: only its user may ask it to

    def stop(_signum: int, _frame: Any) -> None:
        server.interrupt_all("the pnr runner is stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"pnr runner {os.getpid()} ({index + 1}/{pool}) serving {paths.socket} for {api_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        deadline = time.monotonic() + 30
        while server.active and time.monotonic() < deadline:  # let interrupted runs record how they ended
            time.sleep(0.1)
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()
        _reap(children, deadline)


def _fork_pool(pool: int) -> tuple[int, list[int]]:
    """Fork members 1..pool-1 of the pool; (this process's index, the children's pids). Only while this process
    has a single thread (a fork copies one thread: locks another one held would stay held forever)."""
    if pool <= 1 or threading.active_count() > 1:
        if pool > 1:
            print(f"runner pool of 1, not {pool}: threads are running before the fork", flush=True)
        return 0, []
    die_with_leader = die_with_parent(exit_code=0)  # no orphaned members if the leader is SIGKILLed alone
    children = []
    for index in range(1, pool):
        pid = os.fork()
        if pid == 0:
            if die_with_leader is not None:
                die_with_leader()
            return index, []
        children.append(pid)
    return 0, children


def _reap(children: list[int], deadline: float) -> None:
    """The leader ends after its members (they got the same SIGTERM through the process group)."""
    import signal

    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        while daemon.alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _open_client_context() -> Any:
    from prefect.context import SyncClientContext

    try:
        context = SyncClientContext()
        context.client.__enter__()
    except Exception as exc:  # each run then opens its own client, as in any process
        print(f"no shared Prefect client: {exc}", flush=True)
        return None
    return context


def _import_for_runs() -> None:
    """Pay once, before the pool forks, what a process pays on its first flow run: the imports."""
    import prefect.artifacts
    import prefect.events
    import prefect.flow_engine
    import prefect.task_engine  # noqa: F401 - imported for their import cost

    import pnr.engines
    import pnr.lifecycle
    import pnr.model
    import pnr.prefect.flows  # noqa: F401


def _warm_up() -> None:
    """Before the first client connects: the flows' registration with the API (once the server answers)."""
    from prefect.client.orchestration import get_client

    from pnr.backend.server import _healthy
    from pnr.prefect.flows import bring_up, cpux_flow, tear_down

    api_url = os.environ.get("PREFECT_API_URL", "")
    until = time.monotonic() + START_TIMEOUT  # started beside a new server: it may still be migrating
    while time.monotonic() < until and not _healthy(api_url):
        time.sleep(0.1)
    try:
        with get_client(sync_client=True) as client:
            for flow in (bring_up, cpux_flow, tear_down):
                client.create_flow(flow)
    except Exception as exc:  # a warm-up only: the first run will say what is wrong
        print(f"warm-up could not reach {os.environ.get('PREFECT_API_URL')}: {exc}", flush=True)


def _connect(paths: RunnerPaths, timeout: float) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(paths.socket))
    except OSError:
        conn.close()
        raise
    return conn


def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pnr.backend.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--pool", type=int, default=1, help="processes (forked after the imports)")
    options = parser.parse_args(argv)
    serve(options.state_dir, options.api_url, max(1, options.pool))


if __name__ == "__main__":
    main()
