"""The resident runner's processes (see pnr.backend.runner for the protocol): the leader, started detached by
`pnr up` or `pnr server start`, imports pnr and Prefect once and starts the other members of the pool, either
by forking after its imports (Linux: the members share the imported pages) or as processes of their own
(`python -m pnr.backend.runner_process --member I`, where fork is missing or unsafe). Each member serves its
own address (pnr.backend.channel) until SIGTERM; the members go with the leader.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pnr import processes
from pnr.backend import channel
from pnr.backend.protocol import Accepted, Message, UpOutcome, UpRequest, encode
from pnr.backend.runner import MARKER, START_MODES, START_TIMEOUT, code_fingerprint, engine_env
from pnr.records import RunEvent, RunNote
from pnr.settings import quiet_prefect_env


@dataclass(frozen=True)
class Mode:
    """How the pool runs: its size, how members start, how clients reach them."""

    pool: int
    start: str
    transport: str


# -- one request ----------------------------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    member: ClassVar[Member]  # set by a subclass per member (see serve)

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
        if not isinstance(request, dict):
            return
        if not channel.authentic(request, self.member.token):
            return
        if request.get("op") == "ping":
            self._write(
                {
                    "type": "pong",
                    "pid": os.getpid(),
                    "fingerprint": self.member.fingerprint,
                    "api_url": self.member.api_url,
                    "active": self.member.active,
                    "index": self.member.index,
                    "pool": self.member.pool,
                    "members": self.member.member_pids,
                    "stopping": self.member.stopping(),
                    "engine": engine_env(),
                    "start": self.member.start,
                    "transport": self.member.transport,
                }
            )
        elif request.get("op") == "up":
            up = UpRequest.from_json(request.get("args") or {})
            self._bring_up(up, request.get("env") or {}, request.get("pid"), request.get("shown_as"))

    def _write(self, message: Message | Mapping[str, Any]) -> None:
        with self._write_lock:
            self.wfile.write(encode(message))
            self.wfile.flush()

    def _bring_up(self, request: UpRequest, env: dict[str, str], pid: int | None, shown_as: str | None) -> None:
        from pnr.exceptions import ConfigError
        from pnr.lifecycle import RunControl, use_control
        from pnr.model import check_config
        from pnr.prefect.flows import bring_up, quiet_prefect_run

        try:  # first of all, and without a flow run: a bad config is exit 2 with nothing started
            plan = check_config(request.config_path, env, shown_as, request.env_files or ())
            plan.cpuxs_to_run(request.cpux, shown_as or request.config_path)
        except ConfigError as exc:
            with contextlib.suppress(OSError):
                self._write(UpOutcome.failed(exc))
            return
        accepted = Accepted(plan.domain.name, len(plan.chunks), plan.cpux_order, bool(plan.domain.engines))
        with contextlib.suppress(OSError):  # the client prints its header from this (it never loads the config)
            self._write(accepted)
        self._plan = plan
        control = RunControl(environ=env, owner_pid=pid)
        self._detached = False
        control.listen(lambda event: self._event(event, control, request))
        watcher = threading.Thread(target=self._watch_client, args=(control,), daemon=True)
        watcher.start()
        # an interrupted run of the same domain (its client died or pressed Ctrl-C) finishes first
        self.member.started(control, key=request.key)
        try:
            with quiet_prefect_run(), use_control(control), self.member.shared_client():
                result = bring_up(**request.flow_parameters())
            outcome = UpOutcome.done(result, control.flow_run_id)
        except BaseException as exc:
            outcome = UpOutcome.failed(exc, control.flow_run_id, interrupted=bool(control.interrupted))
        finally:
            self.member.finished(control)
        if self._detached:  # the client has its outcome already (see _event): the rest was bookkeeping
            return
        with contextlib.suppress(OSError):
            self._write(outcome)

    def _event(self, event: RunEvent, control: Any, request: UpRequest) -> None:
        if isinstance(event, RunNote) and event.what == "up.outcome":  # every chunk is ready: tell the client now
            self._done_early(event.payload["result"], control, request)
            return
        with contextlib.suppress(OSError):  # the client went away: its watcher interrupts the run
            self._write(event)

    def _done_early(self, result: dict[str, Any], control: Any, request: UpRequest) -> None:
        """The outcome is known: send it, with the status table, while the flow run finishes its bookkeeping
        (artifacts, events, final state) here — nothing the user waits for, and none of it lost."""
        summary = None
        with contextlib.suppress(Exception):  # the client computes the table itself without it
            from pnr.engines import Engine
            from pnr.lifecycle import domain_status

            summary = domain_status(self._plan, Engine(), Path(request.runtime_dir or "."), _ready(result))
        self._detached = True
        with contextlib.suppress(OSError):
            self._write(UpOutcome.done(result, control.flow_run_id, summary))

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


class Member:
    """One process of the pool: what it answers a ping with, and the runs it executes now."""

    def __init__(self, api_url: str, fingerprint: str, token: str, mode: Mode, index: int = 0) -> None:
        self.api_url = api_url
        self.token = token
        self.start, self.transport = mode.start, mode.transport
        self.fingerprint = fingerprint
        self.index, self.pool = index, mode.pool
        self.member_pids: list[int] = []  # the leader's: its members' pids
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


# -- the process ----------------------------------------------------------------------------------------------


def serve(state_dir: Path, api_url: str, mode: Mode, index: int = 0, leader: int | None = None) -> None:
    """A member's main loop: import Prefect (the leader: and start the other members), then serve bring-ups
    until SIGTERM (or, for a spawned member, until its leader is gone)."""
    os.environ["PREFECT_API_URL"] = api_url
    for key, value in quiet_prefect_env().items():
        os.environ.setdefault(key, value)
    spawned: list[subprocess.Popen[bytes]] = []
    if index == 0 and mode.start == "spawn":  # they import while this process does
        spawned = _spawn_members(state_dir, api_url, mode)
    _import_for_runs()
    children = [p.pid for p in spawned]
    if index == 0 and mode.start == "fork":
        index, children = _fork_members(mode.pool)
    _warm_up()

    token = channel.read_token(state_dir)
    fingerprint = os.environ.get("PNR_RUNNER_FINGERPRINT") or code_fingerprint()
    member = Member(api_url, fingerprint, token, mode, index)
    member.member_pids = children
    member.client_context = _open_client_context()

    server = member_server(member, state_dir)

    def stop(_signum: int, _frame: Any) -> None:
        member.interrupt_all("the pnr runner is stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if leader is not None:
        threading.Thread(target=_watch_leader, args=(leader, stop), daemon=True).start()
    print(
        f"pnr runner {os.getpid()} ({index + 1}/{mode.pool}, {mode.start}, {mode.transport}) for {api_url}", flush=True
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        deadline = time.monotonic() + 30
        while member.active and time.monotonic() < deadline:  # let interrupted runs record how they ended
            time.sleep(0.1)
        server.server_close()
        channel.unpublish(mode.transport, state_dir, index)
        _reap(children, deadline)


def member_server(member: Member, state_dir: Path) -> socketserver.BaseServer:
    """The member's server on its transport, its address published in the state dir (not serving yet)."""

    class Handler(_Handler):
        pass

    Handler.member = member
    return channel.listen(member.transport, state_dir, member.index, Handler)


def _spawn_members(state_dir: Path, api_url: str, mode: Mode) -> list[subprocess.Popen[bytes]]:
    """Members 1..pool-1 as processes of their own, in this process's group (POSIX: a stop of the leader's group
    reaches them) and told to end when this process dies (Linux at once; elsewhere their watch notices)."""
    command = [sys.executable, "-m", MARKER, "--state-dir", str(state_dir), "--api-url", api_url]
    command += ["--pool", str(mode.pool), "--start", mode.start, "--transport", mode.transport]
    command += ["--leader", str(os.getpid())]
    members = []
    for index in range(1, mode.pool):
        members.append(
            subprocess.Popen(
                [*command, "--member", str(index)],
                stdin=subprocess.DEVNULL,
                close_fds=True,
                preexec_fn=processes.die_with_parent(exit_code=0),
            )
        )
    return members


def _watch_leader(leader: int, stop: Any) -> None:
    """A spawned member ends with its leader (where the system does not end it by itself)."""
    while processes.alive(leader):
        time.sleep(1.0)
    stop(0, None)


def _fork_members(pool: int) -> tuple[int, list[int]]:
    """Fork members 1..pool-1; (this process's index, the children's pids). Only while this process has a single
    thread (a fork copies one thread: locks another one held would stay held forever)."""
    if pool <= 1 or threading.active_count() > 1:
        if pool > 1:
            print(f"runner pool of 1, not {pool}: threads are running before the fork", flush=True)
        return 0, []
    if sys.platform == "win32":
        raise OSError("no fork on Windows: PNR_RUNNER_START=spawn")
    die_with_leader = processes.die_with_parent(exit_code=0)  # no orphaned members if the leader is SIGKILLed
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
    """The leader ends after its members (on POSIX they had the same SIGTERM through the process group)."""
    import psutil

    members = []
    for pid in children:
        with contextlib.suppress(psutil.Error):
            member = psutil.Process(pid)
            member.terminate()
            members.append(member)
    _gone, left = psutil.wait_procs(members, timeout=max(0.0, deadline + 5 - time.monotonic()))
    for member in left:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(left, timeout=5)


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
    """Pay once, before the pool forks, what a process pays on its first flow run: the imports, including those
    Prefect and pnr make lazily during a run (fastapi and graphviz from Prefect's flow engine, filelock, every
    probe kind, netrc from requests): ~0.4 s of a member's first run otherwise, on the first call's path."""
    import netrc  # noqa: F401 - imported for its import cost

    import fastapi  # noqa: F401
    import prefect.artifacts
    import prefect.events
    import prefect.flow_engine
    import prefect.task_engine
    import prefect.utilities.visualization  # noqa: F401 - imported for their import cost

    import pnr.engines
    import pnr.lifecycle
    import pnr.locks
    import pnr.model
    import pnr.prefect.flows  # noqa: F401
    from pnr.probes.registry import probe_kinds

    probe_kinds()


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MARKER}", description="pnr's resident runner (one member)")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--pool", type=int, default=1, help="processes of the pool")
    parser.add_argument("--start", choices=START_MODES, default="spawn", help="how the leader starts the others")
    parser.add_argument("--transport", choices=channel.TRANSPORTS, default="tcp")
    parser.add_argument("--member", type=int, default=0, help="this member's index (0: the leader)")
    parser.add_argument("--leader", type=int, help="the leader's pid (a spawned member ends with it)")
    options = parser.parse_args(argv)
    mode = Mode(max(1, options.pool), options.start, options.transport)
    serve(options.state_dir, options.api_url, mode, options.member, options.leader)


if __name__ == "__main__":
    main()
