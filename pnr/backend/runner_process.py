"""The resident runner's processes (see pnr.backend.runner for the protocol): the leader, started detached by
`pnr up` or `pnr server start`, imports pnr and Prefect once and starts the other members of the pool, either
by forking after its imports (Linux: the members share the imported pages) or as processes of their own
(`python -m pnr.backend.runner_process --member I`, where fork is missing or unsafe). Each member serves its
own address (pnr.backend.channel) until SIGTERM; the members go with the leader.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from pnr import processes
from pnr.backend import channel
from pnr.backend.protocol import Accepted, Message, UpOutcome, UpRequest, encode
from pnr.backend.run import conclude
from pnr.backend.runner import MARKER, START_MODES, START_TIMEOUT, Pong, code_fingerprint, engine_env
from pnr.exceptions import RunError
from pnr.records import RunEvent, RunNote
from pnr.settings import quiet_prefect_env

if TYPE_CHECKING:
    from prefect.context import SyncClientContext

    from pnr.lifecycle import PreparingAhead, RunControl
    from pnr.model import Plan

Stop = Callable[[int, FrameType | None], None]  # a signal handler


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
        self.member.opened()
        self._write_lock = threading.Lock()  # events come from the run's task threads
        self._plan: Plan | None = None  # the run's plan, as checked before the run

    def handle(self) -> None:
        line = self.rfile.readline()
        try:
            request: channel.Request = json.loads(line)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        if not channel.authentic(request, self.member.token):
            return
        if request.get("op") == "ping":
            self._write(pong(self.member))
        elif request.get("op") == "up":
            up = UpRequest.from_json(request.get("args") or {})
            try:
                self._bring_up(up, request.get("env") or {}, request.get("pid"), request.get("shown_as"))
            except Exception as exc:  # a fault of pnr's own: the client hears of it instead of waiting for ever
                traceback.print_exc()  # into runner.log
                with contextlib.suppress(OSError):
                    self._write(UpOutcome.failed(RunError(f"pnr's runner failed: {type(exc).__name__}: {exc}")))

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.member.closed()

    def _write(self, message: Message | Pong) -> None:
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
            cpuxs = plan.cpuxs_to_run(request.cpux, shown_as or request.config_path)
        except ConfigError as exc:
            with contextlib.suppress(OSError):
                self._write(UpOutcome.failed(exc))
            return
        accepted = Accepted(plan.domain.name, len(plan.chunks), plan.cpux_order, bool(plan.domain.engines))
        with contextlib.suppress(OSError):  # the client prints its header from this (it never loads the config)
            self._write(accepted)
        self._plan = plan
        control = RunControl(environ=env, owner_pid=pid, checked=plan)
        self._detached = False
        control.listen(lambda event: self._event(event, control, request))
        watcher = threading.Thread(target=self._watch_client, args=(control,), daemon=True)
        watcher.start()
        # an interrupted run of the same domain (its client died or pressed Ctrl-C) finishes first
        self.member.started(control, key=request.key)
        result, error = None, None
        try:
            if not request.build:  # the engine work begins while Prefect creates and starts the flow run
                control.ahead = _prepare_ahead(plan, cpuxs, request)
            with quiet_prefect_run(csrf=self.member.csrf), use_control(control), self.member.shared_client():
                result = bring_up(**request.flow_parameters())
        except BaseException as exc:
            error = exc
        finally:
            self.member.finished(control)
        if self._detached:  # the client has its outcome already (see _event): the rest was bookkeeping
            return
        with contextlib.suppress(OSError):
            self._write(_outcome(plan, request, control, result, error))

    def _event(self, event: RunEvent, control: RunControl, request: UpRequest) -> None:
        if isinstance(event, RunNote) and event.what == "up.outcome":  # every chunk is ready: tell the client now
            self._done_early(event.payload["result"], control, request)
            return
        with contextlib.suppress(OSError):  # the client went away: its watcher interrupts the run
            self._write(event)

    def _done_early(self, result: dict[str, object], control: RunControl, request: UpRequest) -> None:
        """The outcome is known: send it, with the status table, while the flow run finishes its bookkeeping
        (artifacts, events, final state) here — nothing the user waits for, and none of it lost."""
        assert self._plan is not None  # checked before the run
        outcome = _outcome(self._plan, request, control, result)
        self._detached = True
        with contextlib.suppress(OSError):
            self._write(outcome)

    def _watch_client(self, control: RunControl) -> None:
        """Interrupt requests from the client; a closed connection interrupts too (unless it has its outcome)."""
        for line in self.rfile:
            with contextlib.suppress(ValueError):
                message: channel.Request = json.loads(line)
                if message.get("op") == "interrupt":
                    control.interrupt(str(message.get("reason") or "interrupted (Ctrl-C)"))
        if not self._detached:
            control.interrupt("the pnr up client went away")


def _prepare_ahead(plan: Plan, cpuxs: list[str], request: UpRequest) -> PreparingAhead | None:
    """The engine work of the first of `cpuxs` under way (`pnr.lifecycle.prepare_ahead`), or None when it cannot
    begin here (the flow then begins it and reports what is wrong, in its run)."""
    from pnr.engines import Engine
    from pnr.lifecycle import prepare_ahead

    try:
        return prepare_ahead(plan, cpuxs, Engine().engine_set(plan, cpuxs), request.config_path, request.force_recreate)
    except Exception:  # the flow run does the same and records the error
        return None


def _outcome(
    plan: Plan,
    request: UpRequest,
    control: RunControl,
    result: dict[str, object] | None,
    error: BaseException | None = None,
) -> UpOutcome:
    """The run's outcome for its client (`conclude`: with or without its report, the client always gets one)."""
    return conclude(plan, request, control.flow_run_id, result, error, interrupted=bool(control.interrupted))


def pong(member: Member) -> Pong:
    """What a member answers a ping with (a forking leader adds its workers)."""
    answer: Pong = {
        "type": "pong",
        "pid": os.getpid(),
        "fingerprint": member.fingerprint,
        "api_url": member.api_url,
        "active": member.active,
        "index": member.index,
        "pool": member.pool,
        "members": member.member_pids,
        "stopping": member.stopping(),
        "engine": engine_env(),
        "start": member.start,
        "transport": member.transport,
        "turn": next(member.turns),
    }
    if member.workers is not None:
        answer["pool"] = 1 + len(member.workers)
        answer["workers"], answer["workers_max"] = member.workers, member.workers_max
    return answer


class Member:
    """One process of the pool: what it answers a ping with, and the runs it executes now."""

    def __init__(self, api_url: str, fingerprint: str, token: str, mode: Mode, index: int = 0) -> None:
        self.api_url = api_url
        self.token = token
        self.start, self.transport = mode.start, mode.transport
        self.fingerprint = fingerprint
        self.index, self.pool = index, mode.pool
        self.member_pids: list[int] = []  # the leader's: its members' pids
        self.workers: list[int] | None = None  # a forking leader's: the indices of its live workers
        self.workers_max = mode.pool
        self._runs: list[tuple[RunControl, str, threading.Event]] = []  # (control, domain key, done)
        self._guard = threading.Lock()
        self._connections = 0
        self._last_seen = time.monotonic()
        self.turns = itertools.count()  # the pings it answered (see `pong`)
        # one Prefect client (connection pool, TLS context) for every run
        self.client_context: SyncClientContext | None = None
        self.csrf = True  # whether the server enforces CSRF protection (asked once, by _warm_up)

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

    def opened(self) -> None:
        with self._guard:
            self._connections += 1
            self._last_seen = time.monotonic()

    def closed(self) -> None:
        with self._guard:
            self._connections -= 1
            self._last_seen = time.monotonic()

    def idle_seconds(self) -> float:
        """Seconds since the last connection closed with no run left; 0 while any is open or running."""
        with self._guard:
            if self._connections > 0 or self._runs:
                return 0.0
            return time.monotonic() - self._last_seen

    def stopping(self) -> list[str]:
        """Keys of runs that were interrupted and are still ending."""
        with self._guard:
            return sorted({k for c, k, _done in self._runs if c.interrupted})

    def started(self, control: RunControl, key: str, wait: float = 60.0) -> None:
        """Count the run; first let an interrupted run of the same domain end (it is stopping already: two runs
        of one domain must not overlap after a client died). A live one is not waited for, as in-process."""
        with self._guard:
            earlier = [(c, done) for c, k, done in self._runs if k == key and c.interrupted]
        deadline = time.monotonic() + wait
        for _control, done in earlier:
            done.wait(max(0.0, deadline - time.monotonic()))
        with self._guard:
            self._runs.append((control, key, threading.Event()))

    def finished(self, control: RunControl) -> None:
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
    until SIGTERM (or, for a spawned member, until its leader is gone). A forking leader serves no run itself:
    it forks a worker when a run needs one (pnr.backend.runner_zygote)."""
    os.environ["PREFECT_API_URL"] = api_url
    for key, value in quiet_prefect_env().items():
        os.environ.setdefault(key, value)
    spawned: list[subprocess.Popen[bytes]] = []
    if index == 0 and mode.start == "spawn":  # they import while this process does
        spawned = _spawn_members(state_dir, api_url, mode)
    _import_for_runs()
    csrf = _warm_up()

    token = channel.read_token(state_dir)
    fingerprint = os.environ.get("PNR_RUNNER_FINGERPRINT") or code_fingerprint()
    member = Member(api_url, fingerprint, token, mode, index)
    member.csrf = csrf
    member.member_pids = [p.pid for p in spawned]
    member.client_context = _open_client_context(csrf)  # opened, not connected: a fork inherits no connection
    if index == 0 and mode.start == "fork":
        if threading.active_count() == 1:
            from pnr.backend.runner_zygote import Zygote

            _settle_memory()

            Zygote(member, state_dir, lambda i, first: _serve_worker(member, i, state_dir, first), pong).serve()
            return
        print("threads run after the imports: this process serves every run itself (no workers)", flush=True)
    _serve_member(member, state_dir, leader)


def _settle_memory() -> None:
    """Before the leader forks: collect garbage, keep what is left out of later collections (a worker's collector
    would otherwise write to every shared object's page, copying it) and give freed memory back to the system."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _serve_worker(leader: Member, index: int, state_dir: Path, first: tuple[Any, Any]) -> None:
    """A forked worker: the leader's member, renumbered, serving `first` (the connection it was forked for) and
    its own address until SIGTERM or until idle for PNR_RUNNER_IDLE_SECONDS."""
    from pnr.settings import get_settings

    mode = Mode(leader.pool, leader.start, leader.transport)
    worker = Member(leader.api_url, leader.fingerprint, leader.token, mode, index)
    worker.client_context, worker.csrf = leader.client_context, leader.csrf
    _serve_member(worker, state_dir, None, get_settings().runner_idle_seconds, first)


def _serve_member(
    member: Member,
    state_dir: Path,
    leader: int | None = None,
    idle: float = 0.0,
    first: tuple[Any, Any] | None = None,
) -> None:
    """Serve the member's address (and `first`, a connection accepted already) until SIGTERM, the leader's end
    (`leader`: a spawned member's) or `idle` seconds without a connection (0: never)."""
    server = member_server(member, state_dir)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        member.interrupt_all("the pnr runner is stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if leader is not None:
        threading.Thread(target=_watch_leader, args=(leader, stop), daemon=True).start()
    if idle > 0:
        threading.Thread(target=_end_when_idle, args=(member, server, state_dir, idle), daemon=True).start()
    if first is not None:
        server.process_request(*first)  # ThreadingMixIn: in a thread of its own
    print(
        f"pnr runner {os.getpid()} (member {member.index}, {member.start}, {member.transport}) for {member.api_url}",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        deadline = time.monotonic() + 30
        while member.active and time.monotonic() < deadline:  # let interrupted runs record how they ended
            time.sleep(0.1)
        server.server_close()
        channel.unpublish(member.transport, state_dir, member.index)
        _reap(member.member_pids, deadline)


def _end_when_idle(member: Member, server: socketserver.BaseServer, state_dir: Path, idle: float) -> None:
    """Stop serving once no connection or run has been seen for `idle` seconds: first withdraw the address (new
    clients go to the leader, which forks a fresh worker), then end when the last connection closed."""
    while (quiet := member.idle_seconds()) < idle:
        time.sleep(max(0.5, idle - quiet))
    channel.unpublish(member.transport, state_dir, member.index)
    while member.idle_seconds() == 0.0:  # a client that connected just before: served first
        time.sleep(0.5)
    print(f"pnr runner {os.getpid()} ends: idle for {idle:g}s", flush=True)
    server.shutdown()


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


def _watch_leader(leader: int, stop: Stop) -> None:
    """A spawned member ends with its leader (where the system does not end it by itself)."""
    while processes.alive(leader):
        time.sleep(1.0)
    stop(0, None)


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


def _open_client_context(csrf: bool) -> SyncClientContext | None:
    from prefect.context import SyncClientContext

    from pnr.prefect.flows import quiet_prefect_run

    try:
        with quiet_prefect_run(csrf=csrf):  # the client reads its settings when made
            context = SyncClientContext()
        context.client.__enter__()
    except Exception as exc:  # each run then opens its own client, as in any process
        print(f"no shared Prefect client: {exc}", flush=True)
        return None
    return context


_RUN_IMPORTS = (
    "prefect.artifacts",
    "prefect.events",
    "prefect.flow_engine",
    "prefect.task_engine",
    "pnr.engines",
    "pnr.lifecycle",
    "pnr.model",
    "pnr.prefect.flows",
    # what a process's first run imported besides (~2.5 MB): the probes, graphviz (each flow call), httpx's netrc.
    # (Not fastapi, which Prefect imports to store a flow run's parameters: pnr's flows do not, see
    # pnr.prefect.params)
    *(f"pnr.probes.{kind}" for kind in ("composite", "docker", "exec", "http", "log", "signal", "socket", "tcp")),
    "prefect.utilities.visualization",
    "psutil",
    "pydantic.color",
    "anyio._backends._asyncio",
    "netrc",
    "filelock",  # pnr.locks imports it when it first takes a lock
)


def _import_for_runs() -> None:
    """Pay once, before the pool forks, what a process pays on its first flow run: the imports."""
    import importlib

    for name in _RUN_IMPORTS:
        importlib.import_module(name)


def _warm_up() -> bool:
    """Before the first client connects: the flows' registration with the API (once the server answers), and
    whether the server enforces CSRF protection (`server_wants_csrf`)."""
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
        return True
    return server_wants_csrf(api_url)


def server_wants_csrf(api_url: str) -> bool:
    """Whether the Prefect server at `api_url` enforces CSRF protection (Prefect's default: it does not). Runs
    that know it does not skip the token request each new Prefect client makes (`quiet_prefect_run(csrf=False)`).
    When in doubt (no answer, another answer), it does."""
    import httpx

    try:  # the answer Prefect's client takes to mean that the server wants no token (prefect.client.base)
        answer = httpx.get(f"{api_url}/csrf-token", params={"client": "pnr-runner"}, timeout=10)
    except httpx.HTTPError:
        return True
    return not (answer.status_code == 422 and "CSRF protection is disabled." in answer.text)


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
