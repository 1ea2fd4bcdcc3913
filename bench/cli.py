"""The command-line benchmark: whole processes timed from a shell, side by side in one run.

    bench/cli.sh --quick          # chain6, outside6 + demo, warm server only, 2 repetitions, 1 min at rest
    bench/cli.sh                  # everything (< 30 min): + ephemeral, first-run, concurrency, scale 100/500
    .venv/bin/python bench/cli.py --stacks chain6 --modes warm ephemeral --backend managed external --repeats 3 \
        --no-concurrency --no-scale
    .venv/bin/python bench/cli.py --postgres auto      # scale also on a PostgreSQL-backed server

Tools, each one a new process spawned from here; wall = spawn → exit (os.wait4), CPU = user + sys of the process
and the children it waited for (the rusage os.wait4 returns):
  lower bound      `python bench/lower_bound.py STACK.json` (start each container when its dependency answers)
  docker-compose   `docker-compose up -d` (1.29.2, healthchecks + depends_on: service_healthy); it returns before
                   the last service is ready, so its wall is spawn → the later of its exit and the moment every
                   service answers the same host-side probe as the lower bound's
  pnr              `pnr up CONFIG` in modes
                   warm/managed   `pnr server start` first (server + resident runner, own PNR_STATE_DIR and port);
                                  `pnr up` without PREFECT_API_URL is then a thin client of the runner
                   warm/external  a `prefect server start` of the bench's own; `pnr up` with PREFECT_API_URL runs the
                                  flow in its own process
                   ephemeral      PNR_EPHEMERAL_SERVER=1: a temporary server per call (pnr's default before it had a
                                  resident server); one uncounted warm-up call first creates its database
                   first-run      fresh PREFECT_HOME and PNR_STATE_DIR, no server: the first call on a new machine
                                  (it starts pnr's server), then a second call right after
                   (`--backend auto` = managed when `pnr server --help` works, else external). The server's (and
                   runner's) CPU during each call is read from /proc and reported next to the process's own.
pnr is imported from a copy of pnr/ taken at the start (`--no-snapshot`: the work tree), so that concurrent edits
neither change what is measured nor restart pnr's runner in the middle of a run.
Between repetitions everything is torn down with the tool's own command (`pnr down`, `docker-compose down`), then
swept by label (pnr.bench.run=<tag>); what the tool's teardown left behind is recorded. Results:
bench/results/cli-<stamp>.json, cli-latest.json and cli-latest.md (the section bench/cli_report.py renders).
After the stacks, the warm backend is left idle for --at-rest-minutes and its memory and CPU are read from /proc
(bench/at_rest.py): the at-rest footprint, in the same report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import at_rest  # noqa: E402
import cli_report  # noqa: E402
import lower_bound  # noqa: E402
import report  # noqa: E402
from stacks import (  # noqa: E402
    BENCH_LABEL,
    SLEEP_TRAP,
    Stack,
    chain,
    compose_file,
    demo,
    free_port,
    layered,
    outside,
    pnr_config,
    remove_containers,
)

VENV_BIN = Path(sys.executable).parent
PNR_UP_STACKS: dict[str, Callable[[], Stack]] = {
    "chain6": lambda: chain(6, delay=1.0),  # busybox httpd answering 200 one second after start, s0 → … → s5
    "outside6": outside,  # the outside harness's chain: httpd on PORT published "PORT": "PORT", probe every 0.02 s
    "demo": demo,  # config/dev_stack.json's redis → api → web, pnr-demo/* images
}
SMALL = lambda: chain(3, delay=1.0)  # noqa: E731  the concurrency domains and the warm-ups
MODES = ("warm", "ephemeral", "first-run")
SUSPECT = ("traceback", "error", "warning", "exception", "deprecat")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[cli-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- timing whole processes ----------------------------------------------------------------------------------
@dataclass
class Timed:
    """One finished process: wall from spawn to exit, rusage of it and its waited-for children, its output lines
    with their time since spawn."""

    cmd: list[str]
    rc: int
    wall: float
    user: float
    sys: float
    maxrss_mb: float
    out: list[tuple[float, str]] = field(default_factory=list)
    err: list[tuple[float, str]] = field(default_factory=list)
    pipes_open_after_exit: bool = False  # a child kept stdout/stderr open after the process had exited
    timed_out: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in (self.out + self.err)[-n:])

    def record(self) -> dict[str, Any]:
        return {
            "rc": self.rc,
            "wall": self.wall,
            "cpu": self.cpu,
            "user": self.user,
            "sys": self.sys,
            "maxrss_mb": self.maxrss_mb,
            "pipes_open_after_exit": self.pipes_open_after_exit,
            "timed_out": self.timed_out,
        }


class Running:
    """A process started now; `result()` waits for it. os.wait4 runs in a thread (exact exit time, rusage), each
    output pipe has a reader thread that timestamps lines."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.cmd = cmd
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self.readers:
            t.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _read(self, pipe: Any, sink: list[tuple[float, str]]) -> None:
        for raw in iter(pipe.readline, b""):
            sink.append((time.monotonic() - self.t0, raw.decode(errors="replace").rstrip("\r\n")))

    def _wait(self) -> None:
        _, status, self.usage = os.wait4(self.proc.pid, 0)
        self.end = time.monotonic()
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        self.done.set()

    def result(self, timeout: float) -> Timed:
        timed_out = not self.done.wait(timeout)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.done.wait(30)
        held = False
        for t in self.readers:
            t.join(3)
            held |= t.is_alive()
        u = self.usage
        return Timed(
            self.cmd,
            self.proc.returncode,
            self.end - self.t0,
            u.ru_utime,
            u.ru_stime,
            u.ru_maxrss / 1024,
            list(self.out),
            list(self.err),
            held,
            timed_out,
        )


def timed(cmd: list[str], env: dict[str, str], timeout: float = 600) -> Timed:
    return Running(cmd, env).result(timeout)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + sys, with reaped children) of a process and all its descendants."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def pnr_timeline(t: Timed) -> dict[str, Any]:
    """Milestones of `pnr up`'s output (seconds since spawn): its first line (interpreter + imports + config),
    the first container start, the "up: … completed" line, and the exit after it."""
    first = t.out[0][0] if t.out else None
    start = next((s for s, line in t.out if " starting " in line), None)
    done = next((s for s, line in t.out if line.startswith("up:") and "completed" in line), None)
    return {
        "first_output": first,
        "first_start": start,
        "completed_line": done,
        "exit_after_completed": t.wall - done if done is not None else None,
    }


def suspects(t: Timed) -> list[str]:
    """Lines that look like warnings, errors or tracebacks (stdout and stderr)."""
    return [line.strip() for _, line in t.out + t.err if any(w in line.lower() for w in SUSPECT)]


# -- Prefect servers for the warm modes ------------------------------------------------------------------------
def state_pids(state_dir: str | None) -> dict[str, int]:
    """pnr's resident server and runner recorded in a PNR_STATE_DIR (server.pid, runner.pid), if any."""
    pids = {}
    for name in ("server", "runner"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pids[name] = int(json.loads(Path(state_dir or "/nonexistent", f"{name}.pid").read_text())["pid"])
    return pids


class Server:
    """A warm Prefect backend. external: `prefect server start` of this bench's own, in a session of its own,
    stopped by its pid; `pnr up` gets PREFECT_API_URL and runs the flow in its own process. managed:
    `pnr server start` (server + resident runner) in a PNR_STATE_DIR of its own, stopped by `pnr server stop`;
    `pnr up` gets that PNR_STATE_DIR (no PREFECT_API_URL) and is a thin client of the runner."""

    def __init__(self, bench: Bench, kind: str, name: str, database_url: str | None = None) -> None:
        self.bench, self.kind, self.name, self.database_url = bench, kind, name, database_url
        self.dir = bench.tmp / f"server-{name}"
        self.dir.mkdir(parents=True)
        self.pid = 0
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.startup_s = 0.0

    def env(self) -> dict[str, str]:
        """The environment a `pnr up` against this server gets."""
        if self.kind == "managed":
            return {**self.managed_env(), "PREFECT_HOME": str(self.dir / "client-home")}
        return {
            **self.bench.base_env(),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.dir / "client-home"),
            "PNR_STATE_DIR": str(self.dir / "client-state"),
        }

    def managed_env(self) -> dict[str, str]:
        env = {**self.bench.base_env(), "PNR_STATE_DIR": str(self.dir / "state"), "PNR_SERVER_PORT": str(self.port)}
        if self.database_url:
            env["PNR_SERVER_DATABASE_URL"] = self.database_url
        return env

    def start(self) -> None:
        t0 = time.monotonic()
        if self.kind == "managed":
            self._start_managed()
        else:
            self._start_external()
        self.startup_s = time.monotonic() - t0
        log(f"{self.kind} Prefect server {self.name} at {self.api_url} (pid {self.pid}) in {self.startup_s:.1f}s")

    def _start_external(self) -> None:
        env = {**self.bench.base_env(), "PREFECT_HOME": str(self.dir / "home"), "PREFECT_UI_ENABLED": "false"}
        env["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        cmd = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.dir / "server.log", "wb") as out:  # the child keeps its own copy of the fd
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid, self.proc = proc.pid, proc
        self._wait_healthy(lambda: proc.poll() is None)

    def _start_managed(self) -> None:
        res = timed([self.bench.pnr, "server", "start"], self.managed_env(), timeout=300)
        if res.rc != 0:
            raise RuntimeError(f"pnr server start failed ({res.rc}):\n{res.tail()}")
        rec = json.loads((self.dir / "state" / "server.pid").read_text())
        self.pid, self.api_url = int(rec["pid"]), rec["api_url"]
        self._wait_healthy(lambda: Path(f"/proc/{self.pid}").exists())

    def _wait_healthy(self, alive: Callable[[], bool], timeout: float = 240) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"Prefect server {self.name} not healthy; see {self.dir}")

    def stop(self) -> None:
        if self.kind == "managed":
            timed([self.bench.pnr, "server", "stop"], self.managed_env(), timeout=60)
            return
        if self.pid and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)  # its own session: the server and its children
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)


def backend_pids(env: dict[str, str], server: Server | None) -> dict[str, int]:
    """The long-lived processes a `pnr up` with this environment uses besides its own: the external server, or
    pnr's resident server and runner in its PNR_STATE_DIR (started by `pnr server start` or by a first `pnr up`)."""
    pids = state_pids(env.get("PNR_STATE_DIR"))
    if server is not None and server.kind == "external":
        pids["server"] = server.pid
    return pids


def backend_cpu(pids: dict[str, int]) -> dict[int, float]:
    """CPU seconds so far of each process (tree) by pid."""
    return {pid: tree_cpu(pid) for pid in set(pids.values())}


def cpu_since(before: dict[int, float], pids: dict[str, int]) -> float:
    """CPU of these processes since `before`; a process started since (a first server, a replaced runner) counts
    from its start. The CPU of a process that was replaced in between is lost."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in backend_cpu(pids).items())


# -- the bench ---------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = uuid.uuid4().hex[:6]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pnrcli-{self.tag}-"))
        self.client = docker.from_env(timeout=300)
        self.pnr = str(args.pnr)
        self.pythonpath = self.snapshot() if args.snapshot else None
        self.servers: list[Server] = []
        self._servers: dict[str, Server] = {}
        self.state_dirs: set[Path] = set()  # every PNR_STATE_DIR a pnr up got: a server pnr left there is stopped
        self.networks: set[str] = set()
        self.problems: list[str] = []  # for the report's notes
        self.seq = 0

    def snapshot(self) -> str:
        """A copy of pnr/ (compiled, as pip installs it) that every pnr process of the run imports: what is measured
        stays the same code while others edit the work tree (pnr's runner restarts whenever pnr's files change)."""
        src = self.tmp / "src"
        shutil.copytree(ROOT / "pnr", src / "pnr", ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
        return str(src)

    def base_env(self) -> dict[str, str]:
        """The caller's environment without its Prefect/pnr settings, plus the offline-friendly ones."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PNR_"))}
        env.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.pythonpath, os.environ.get("PYTHONPATH")]))
        return env

    def prefix(self, what: str) -> str:
        self.seq += 1
        return f"pc{self.tag}-{self.seq:03d}-{what}-"

    # -- cleanup ----------------------------------------------------------------------------------------
    def leftovers(self) -> dict[str, list[str]]:
        api = self.client.api
        containers = [c["Names"][0].lstrip("/") for c in api.containers(all=True, filters=self._label())]
        nets = {n["Name"] for n in api.networks(filters=self._label())}
        nets |= {n["Name"] for name in self.networks for n in api.networks(names=[name]) if n["Name"] == name}
        return {"containers": sorted(containers), "networks": sorted(nets)}

    def _label(self) -> dict[str, str]:
        return {"label": f"{BENCH_LABEL}={self.tag}"}

    def sweep(self) -> dict[str, list[str]]:
        """Remove everything of this bench that is left (by label, and the networks recorded by name)."""
        left = self.leftovers()
        api = self.client.api
        remove_containers(api, left["containers"])
        for name in left["networks"]:
            try:
                api.remove_network(name)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # dockerd 20.10 can keep stale endpoints after mass removal
                log(f"could not remove network {name}: {exc.explanation}")
                self.problems.append(f"network {name} could not be removed: {exc.explanation}")
        self.networks.clear()
        return left

    def close(self) -> None:
        for srv in self.servers:
            try:
                srv.stop()
            except Exception as exc:  # reported; the other servers are still stopped
                log(f"could not stop server {srv.name}: {exc}")
        if self.args.managed_available:
            for state in self.state_dirs:  # a server/runner `pnr up` started by itself in a state dir of ours
                if state_pids(str(state)):
                    log(f"stopping the server pnr left running in {state}")
                    timed([self.pnr, "server", "stop"], {**self.base_env(), "PNR_STATE_DIR": str(state)}, 60)
        with contextlib.suppress(Exception):
            self.sweep()
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- tools ------------------------------------------------------------------------------------------
    def write(self, name: str, data: dict[str, Any]) -> Path:
        path = self.tmp / name
        path.write_text(json.dumps(data, indent=1))
        return path

    def lower_bound(
        self,
        stack: Stack,
        prefix: str,
        script: str = "lower_bound.py",
        env: dict[str, str] | None = None,
    ) -> Running:
        spec = self.write(f"{prefix}stack.json", stack.to_dict())
        self.networks.add(f"{prefix}net")
        cmd = [sys.executable, str(HERE / script), str(spec), "--prefix", prefix, "--tag", self.tag]
        return Running(cmd, env or self.base_env())

    def run_prefect_floor(self, stack: Stack, server: Server) -> dict[str, Any]:
        """bench/prefect_floor.py against `server`: the lower bound with each service a Prefect task run."""
        env = {**self.base_env(), "PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(server.dir / "floor-home")}
        pids0 = backend_pids(server.env(), server)
        cpu0 = backend_cpu(pids0)
        rec = self.run_lower_bound(stack, "prefect_floor.py", env)
        rec.update(tool="prefect_floor", server_cpu=cpu_since(cpu0, backend_pids(server.env(), server)))
        return rec

    def run_lower_bound(
        self,
        stack: Stack,
        script: str = "lower_bound.py",
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        prefix = self.prefix("lb")
        t = self.lower_bound(stack, prefix, script, env).result(self.timeout(stack))
        rec = {"tool": "lower_bound", "mode": "", **t.record()}
        inner = next((json.loads(line) for _, line in reversed(t.out) if line.startswith("{")), {})
        rec["inner_wall"] = inner.get("wall")
        if t.rc != 0:
            rec["error"] = f"lower bound failed ({t.rc}): {t.tail()}"
        t1 = time.monotonic()
        self.sweep()
        rec["teardown_wall"] = time.monotonic() - t1
        return rec

    def run_compose(self, stack: Stack) -> dict[str, Any]:
        prefix = self.prefix("co")
        project = prefix.rstrip("-").replace("-", "")
        path = self.write(f"{project}.yml", compose_file(stack, prefix, self.tag, self.args.compose_interval))
        self.networks.add(f"{project}_default")
        base = ["docker-compose", "-p", project, "-f", str(path), "--ansi", "never"]
        env = {**self.base_env(), "COMPOSE_HTTP_TIMEOUT": "600"}
        run = Running([*base, "up", "-d"], env)
        t = run.result(self.timeout(stack))
        rec: dict[str, Any] = {"tool": "compose", "mode": "", **t.record(), "returned": t.wall}
        if t.rc != 0:
            rec["error"] = f"docker-compose up failed ({t.rc}): {t.tail()}"
        else:
            ready = wait_ready(stack, deadline=time.monotonic() + 300)
            rec["wall"] = max(ready, run.end) - run.t0  # compose returns before its last service is ready
            rec["suspects"] = suspects(t)
        down = timed([*base, "down", "-v", "-t", "2"], env, timeout=600)
        rec["teardown_wall"] = down.wall
        rec["leftovers"] = self.sweep()
        return rec

    def pnr_up(self, stack: Stack, prefix: str, env: dict[str, str]) -> tuple[Running, Path, Path]:
        domain = prefix.rstrip("-")
        cfg = self.write(f"{domain}.json", pnr_config(stack, domain, prefix, self.tag, self.args.pnr_probe_interval))
        runtime = self.tmp / f"runtime-{domain}"
        self.networks.add(f"pnr_{domain}")
        if "PNR_STATE_DIR" in env:
            self.state_dirs.add(Path(env["PNR_STATE_DIR"]))
        cmd = [self.pnr, "up", str(cfg), "--runtime-dir", str(runtime), "--timeout", str(self.timeout(stack) - 30)]
        return Running(cmd, env), cfg, runtime

    def pnr_record(self, t: Timed, mode: str) -> dict[str, Any]:
        rec = {"tool": "pnr", "mode": mode, **t.record(), **pnr_timeline(t), "suspects": suspects(t)}
        lines = [[round(s, 3), line] for s, line in t.out + [(s, "stderr: " + line) for s, line in t.err]]
        lines.sort(key=lambda x: x[0])
        rec["output"] = lines if len(lines) <= 150 else [*lines[:100], [None, "…"], *lines[-50:]]
        if t.rc != 0:
            rec["error"] = f"pnr up failed ({t.rc}): {t.tail()}"
        return rec

    def pnr_down(self, cfg: Path, runtime: Path, env: dict[str, str]) -> tuple[float, str]:
        # -t 2 as docker-compose down gets: outside6's httpd is PID 1 without a TERM handler and waits out its grace
        down = timed([self.pnr, "down", str(cfg), "--runtime-dir", str(runtime), "-t", "2"], env, timeout=900)
        return down.wall, ("" if down.rc == 0 else f"pnr down failed ({down.rc}): {down.tail()}")

    def run_pnr(self, stack: Stack, mode: str, env: dict[str, str], server: Server | None) -> dict[str, Any]:
        prefix = self.prefix("pn")
        pids0 = backend_pids(env, server)
        cpu0 = backend_cpu(pids0)
        run, cfg, runtime = self.pnr_up(stack, prefix, env)
        t = run.result(self.timeout(stack))
        rec = self.pnr_record(t, mode)
        pids = backend_pids(env, server)
        # the server's (and the runner's) CPU during the call; None: none (the temporary server is pnr's child)
        rec["server_cpu"] = cpu_since(cpu0, pids) if pids or pids0 else None
        rec["backend_pids"], rec["backend_restarted"] = pids, bool(pids0) and pids != pids0
        rec["left_server"] = bool(state_pids(env.get("PNR_STATE_DIR")))
        rec["teardown_wall"], problem = self.pnr_down(cfg, runtime, env)
        if problem:
            rec["teardown_error"] = problem
        rec["leftovers"] = self.sweep()
        return rec

    def timeout(self, stack: Stack) -> float:
        return 600 + 3 * len(stack.services)

    # -- modes ------------------------------------------------------------------------------------------
    def server(self, kind: str) -> Server:
        """The warm server of this kind (external or managed), started on first use."""
        if kind not in self._servers:
            srv = Server(self, kind, kind)
            self.servers.append(srv)
            self._servers[kind] = srv
            srv.start()
        return self._servers[kind]

    def ephemeral_env(self) -> dict[str, str]:
        home = self.tmp / "ephemeral"
        home.mkdir(exist_ok=True)  # Prefect creates PREFECT_HOME only where its parent exists
        env = {**self.base_env(), "PREFECT_HOME": str(home / "home"), "PNR_STATE_DIR": str(home / "state")}
        return {**env, "PNR_EPHEMERAL_SERVER": "1"}  # the default before pnr had a resident server

    def fresh_env(self) -> dict[str, str]:
        """A new machine: nothing in PREFECT_HOME or PNR_STATE_DIR, no server. Its own port for the server the
        first call starts (4200 may be taken by someone else's server on a shared machine)."""
        home = Path(tempfile.mkdtemp(prefix="first-", dir=self.tmp))
        env = {**self.base_env(), "PREFECT_HOME": str(home / "home"), "PNR_STATE_DIR": str(home / "state")}
        return {**env, "PNR_SERVER_PORT": str(free_port())}

    def mode_runner(self, mode: str) -> Callable[[Stack], dict[str, Any]]:
        """`warm/external`, `warm/managed` or `ephemeral`."""
        if mode.startswith("warm/"):
            kind = mode.split("/", 1)[1]
            return lambda stack: self.run_pnr(stack, mode, self.server(kind).env(), self.server(kind))
        return lambda stack: self.run_pnr(stack, "ephemeral", self.ephemeral_env(), None)

    def warm_up(self, data: dict[str, Any]) -> None:
        """One uncounted `pnr up` per mode: the ephemeral mode's database is created, the server has seen a run."""
        for mode in self.args.pnr_modes:
            rec = self.mode_runner(mode)(SMALL())
            rec.update(stack="chain3", repeat=-1)
            data["warmups"].append(rec)
            log(f"warm-up {mode:<14} {fmt_rec(rec)}")

    def first_run(self, stack: Stack) -> list[dict[str, Any]]:
        """A fresh PREFECT_HOME and PNR_STATE_DIR, no server: the first `pnr up` on a new machine, then a second.
        Right before: the floor of that first call, Prefect's own server started on an empty database."""
        floor = self.prefect_cold_start()
        app_floor = self.prefect_app_start()
        env = self.fresh_env()
        recs = [self.run_pnr(stack, f"first-run #{call}", env, None) for call in (1, 2)]
        recs[0]["prefect_cold_start"] = floor
        recs[0]["prefect_app_start"] = app_floor
        if self.args.managed_available and state_pids(env["PNR_STATE_DIR"]):
            timed([self.pnr, "server", "stop"], env, 60)  # the server (and runner) the first call started
        return recs

    def prefect_app_start(self) -> dict[str, float] | None:
        """Prefect's own server app (`uvicorn --factory prefect.server.api.server:create_app`, pnr's server settings)
        on a copy of pnr's database template, as a new pnr server starts (no migration to run): seconds until it
        answers /api/health, and until its first API call (`POST /api/flows/`: FastAPI builds its routes on the
        first request) has answered. What pnr's first call pays before any of pnr's own work, at the least."""
        import json as _json
        import urllib.request

        from pnr.backend.server import SERVER_TUNING, seed_database

        home = Path(tempfile.mkdtemp(prefix="app-", dir=self.tmp)) / "home"
        home.mkdir()
        if seed_database(home) is None:
            return None  # no template for this Prefect version
        port = free_port()
        env = {**self.base_env(), **SERVER_TUNING, "PREFECT_HOME": str(home)}
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
        command = [str(VENV_BIN / "python"), "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        with started_server(command, env, home.parent / "server.log", port) as (began, healthy):
            if healthy is None:
                return None
            body = _json.dumps({"name": "pnr-bench-first-call"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/flows/", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
            first_call = time.monotonic() - began
        log(f"Prefect's app on pnr's template: healthy after {healthy:.2f}s, first API call {first_call:.2f}s")
        return {"healthy": healthy, "first_call": first_call}

    def prefect_cold_start(self) -> float | None:
        """Seconds until a bare `prefect server start` (pnr's server settings) on an empty PREFECT_HOME answers
        /api/health: its imports and every database migration. What any first call on a new machine pays."""
        from pnr.backend.server import SERVER_TUNING

        home = Path(tempfile.mkdtemp(prefix="cold-", dir=self.tmp))
        port = free_port()
        env = {**self.base_env(), **SERVER_TUNING, "PREFECT_HOME": str(home / "home")}
        command = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with started_server(command, env, home / "server.log", port) as (_began, healthy):
            if healthy is not None:
                log(f"bare `prefect server start`, empty database: healthy after {healthy:.2f}s")
            return healthy


@contextlib.contextmanager
def started_server(
    command: list[str], env: dict[str, str], log_path: Path, port: int
) -> Iterator[tuple[float, float | None]]:
    """Start a Prefect server (`command`, in a session of its own, output to `log_path`) and wait for its
    /api/health on `port`: (when it was started, seconds until it answered, or None if it exited or 180 s went
    by). Its process group is stopped on leaving."""
    import urllib.request

    with open(log_path, "wb") as out:
        began = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        healthy = None
        while healthy is None and time.monotonic() - began < 180 and proc.poll() is None:
            health = f"http://127.0.0.1:{port}/api/health"
            with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(health, timeout=1) as answer:
                healthy = time.monotonic() - began if answer.status == 200 else None
            if healthy is None:
                time.sleep(0.05)
        yield began, healthy
    finally:
        from pnr.processes import terminate

        terminate(proc.pid, 30)  # SIGTERM to its process group, SIGKILL after 30 s
        proc.wait(10)


def fmt_rec(rec: dict[str, Any]) -> str:
    if "error" in rec:
        return "FAILED: " + rec["error"][-600:]
    extra = ""
    if rec.get("exit_after_completed") is not None:
        extra = f", completed→exit {rec['exit_after_completed']:.2f}s"
    if rec.get("leftovers", {}).get("containers"):
        extra += f", LEFT {len(rec['leftovers']['containers'])} containers"
    return f"{rec['wall']:.2f}s wall, {rec['cpu']:.2f}s cpu{extra}"


def wait_ready(stack: Stack, deadline: float) -> float:
    """Poll every service's host-side probe (the lower bound's) every 5 ms; the moment the last one answered."""
    checks = {"http": lower_bound._http_ok, "redis": lower_bound._redis_ok}
    pending = [s for s in stack.services if s.probe]
    last = time.monotonic()
    while pending:
        pending = [s for s in pending if not checks[s.probe or ""](s)]
        last = time.monotonic()
        if pending and last > deadline:
            raise TimeoutError(f"never ready: {[s.name for s in pending]}")
        if pending:
            time.sleep(lower_bound.POLL)
    return last


# -- experiments ---------------------------------------------------------------------------------------------
def bench_stacks(bench: Bench, data: dict[str, Any]) -> None:
    args = bench.args
    tools: list[tuple[str, Callable[[Stack], dict[str, Any]]]] = [
        ("lower_bound", bench.run_lower_bound),
        ("compose", bench.run_compose),
    ]
    tools += [(f"pnr {m}", bench.mode_runner(m)) for m in args.pnr_modes]
    for name in args.stacks:
        chunks = len(PNR_UP_STACKS[name]().services)
        for r in range(args.repeats):
            order = tools[r % len(tools) :] + tools[: r % len(tools)]  # no tool always goes first
            for label, fn in order:
                load = os.getloadavg()[0]
                rec = guarded(bench, label, fn, PNR_UP_STACKS[name]())  # new host ports each time
                rec.update(stack=name, repeat=r, chunks=chunks, load1=load)
                data["runs"].append(rec)
                log(f"{name:<7} #{r} {label:<16} {fmt_rec(rec)}")
                save(data, "cli-partial.json")
        if "first-run" in args.modes:
            for r in range(args.first_run_repeats):
                for rec in bench.first_run(PNR_UP_STACKS[name]()):
                    rec.update(stack=name, repeat=r, chunks=chunks, load1=os.getloadavg()[0])
                    data["runs"].append(rec)
                    log(f"{name:<7} #{r} pnr {rec['mode']:<12} {fmt_rec(rec)}")
                save(data, "cli-partial.json")


def guarded(bench: Bench, label: str, fn: Callable[[Stack], dict[str, Any]], stack: Stack) -> dict[str, Any]:
    """A tool's run; an unexpected exception (not a failed command, which the tool records) fails this run only."""
    try:
        return fn(stack)
    except Exception as exc:
        with contextlib.suppress(Exception):
            bench.sweep()
        tool, _, mode = label.partition(" ")
        return {"tool": tool, "mode": mode, "wall": float("nan"), "cpu": float("nan"), "error": f"{exc!r}"[:2000]}


def bench_at_rest(bench: Bench, data: dict[str, Any]) -> None:
    """The warm backend left alone for --at-rest-minutes after the stacks' runs: memory (RSS, PSS, USS) and CPU of
    the server and each runner member, from /proc (bench/at_rest.py)."""
    server = bench.server(bench.args.backends[0])
    procs = at_rest.backend_processes(Path(server.managed_env()["PNR_STATE_DIR"])) if server.kind == "managed" else {}
    procs = procs or {"server": server.pid}
    log(f"at rest: {sorted(procs)} idle for {bench.args.at_rest_minutes:g} min")
    result = at_rest.measure(procs, bench.args.at_rest_minutes * 60)
    data["at_rest"] = {"backend": server.kind, **result}
    total = result["total"]
    log(f"at rest: {total['rss_mb']:.0f} MB RSS, {total['pss_mb']:.0f} MB PSS, {total['cpu_pct']:.2f} % of a core")


# the concurrency domains: 3-chunk chains of both shapes (the outside harness measured six at once on its own)
CONCURRENCY: dict[str, tuple[str, Callable[[], Stack]]] = {
    "concurrency": ("chain3", SMALL),
    "concurrency_outside": ("outside3", lambda: outside(3)),
}


def bench_concurrency(bench: Bench, data: dict[str, Any]) -> None:
    """N `pnr up`s of different 3-chunk domains at once against one server, vs one alone; the same for the lower
    bound (what the machine's 2 cores allow anyway). Once per shape (CONCURRENCY), in rounds: each round times one
    alone and N at once next to each other (the order reversed every other round), so that a ratio compares
    runs of the same minute — how fast this shared machine runs moves from one minute to the next."""
    n, server = bench.args.concurrency, bench.server(bench.args.backends[0])
    mode = f"warm/{server.kind}"
    for key, (name, shape) in CONCURRENCY.items():
        out: dict[str, Any] = {"n": n, "stack": name, "mode": mode, "single": [], "single_lb": []}
        out["bursts"], out["bursts_lb"], out["rounds"] = [], [], []
        for repeat in range(bench.args.concurrency_repeats):
            order = (
                ["single", "bursts", "single_lb", "bursts_lb"]
                if repeat % 2 == 0
                else ["bursts", "single", "bursts_lb", "single_lb"]
            )
            for kind in order:
                out[kind].append(concurrency_step(bench, kind, n, server, shape))
            out["rounds"].append(
                {
                    "pnr": burst_ratio([r["wall"] for r in out["bursts"][-1]["runs"]], out["single"][-1]),
                    "lower_bound": burst_ratio([r["wall"] for r in out["bursts_lb"][-1]], out["single_lb"][-1]),
                }
            )
            log(
                f"concurrency ({name}) round {repeat + 1}: one alone {out['single'][-1]['wall']:.2f} s, {n} at once "
                f"{[round(r['wall'], 2) for r in out['bursts'][-1]['runs']]}: {out['rounds'][-1]}"
            )
        data[key] = out


def concurrency_step(bench: Bench, kind: str, n: int, server: Server, shape: Callable[[], Stack]) -> Any:
    """One part of a concurrency round: `single`, `bursts`, `single_lb` or `bursts_lb`."""
    if kind == "single":
        return bench.run_pnr(shape(), f"warm/{server.kind}", server.env(), server)
    if kind == "bursts":
        return pnr_burst(bench, n, server, shape)
    if kind == "single_lb":
        return bench.run_lower_bound(shape())
    return lower_bound_burst(bench, n, shape)


def lower_bound_burst(bench: Bench, n: int, shape: Callable[[], Stack]) -> list[dict[str, Any]]:
    lbs = [bench.lower_bound(shape(), bench.prefix("lb")) for _ in range(n)]
    records = [{**t.record()} for t in (r.result(600) for r in lbs)]
    bench.sweep()
    return records


def burst_ratio(walls: list[float], single: dict[str, Any]) -> float | None:
    """The median wall of a burst over the wall of the one alone of the same round."""
    return statistics.median(walls) / single["wall"] if walls and "error" not in single and single["wall"] else None


def pnr_burst(bench: Bench, n: int, server: Server, shape: Callable[[], Stack]) -> dict[str, Any]:
    load, cpu0 = os.getloadavg()[0], backend_cpu(backend_pids(server.env(), server))
    started = [bench.pnr_up(shape(), bench.prefix(f"k{i}"), server.env()) for i in range(n)]
    runs = [bench.pnr_record(run.result(600), f"warm/{server.kind}") for run, _, _ in started]
    server_cpu = cpu_since(cpu0, backend_pids(server.env(), server))
    with ThreadPoolExecutor(n) as pool:
        downs = list(pool.map(lambda s: bench.pnr_down(s[1], s[2], server.env()), started))
    return {
        "runs": runs,
        "server_cpu": server_cpu,
        "load1": load,
        "teardown_errors": [p for _, p in downs if p],
        "leftovers": bench.sweep(),
    }


LEAN = "PNR_CHUNK_EVENTS=false"  # the scale variant without pnr's per-chunk events


def bench_scale(bench: Bench, data: dict[str, Any]) -> None:
    """(pnr wall − lower-bound wall) / chunks on wide/deep domains, SQLite server, and PostgreSQL when given."""
    servers = [bench.server(bench.args.backends[0])]
    if bench.args.postgres_url:
        pg = Server(bench, servers[0].kind, "postgres", database_url=bench.args.postgres_url)
        bench.servers.append(pg)
        try:
            pg.start()
            servers.append(pg)
            rec = bench.run_pnr(SMALL(), f"warm/{pg.kind}", pg.env(), pg)  # uncounted, as for the other servers
            data["warmups"].append({**rec, "stack": "chain3", "repeat": -1, "database": "postgresql"})
        except Exception as exc:  # reported; SQLite results still count
            data["notes"].append(f"PostgreSQL-backed server did not start: {exc}")
    for size in bench.args.scale:
        stack = lambda: layered(size, command=SLEEP_TRAP)  # noqa: B023, E731
        # At 500 chunks one run's wall moves by ±10 s between runs of the same tool (the engine's), as much as the
        # target: repeat in rounds, the order reversed every other round (ABBA), and compare medians.
        steps = [("lower_bound", None)] + [(tool, srv) for srv in servers for tool in scale_tools(bench.args)]
        for repeat in range(bench.args.scale_repeats):
            for tool, srv in steps if repeat % 2 == 0 else reversed(steps):
                rec = scale_step(bench, stack(), tool, srv)
                rec.update(stack=f"scale{size}", chunks=size, repeat=repeat, load1=os.getloadavg()[0])
                data["scale"].append(rec)
                where = f" ({rec['database']})" if srv else ""
                log(f"scale{size} #{repeat + 1} {tool}{where} {fmt_rec(rec)}")
                save(data, "cli-partial.json")


def scale_tools(args: argparse.Namespace) -> list[str]:
    """What runs against each server at scale, besides the lower bound once per round."""
    return [
        *(["prefect_floor"] if args.floor else []),
        "pnr",
        *(["pnr_lean"] if args.chunk_events_off else []),
    ]


def scale_step(bench: Bench, stack: Stack, tool: str, srv: Server | None) -> dict[str, Any]:
    if srv is None:
        return bench.run_lower_bound(stack)
    database = {"database": "postgresql" if srv.database_url else "sqlite"}
    if tool == "prefect_floor":  # the scale stacks have no probes: one task run each
        return {**bench.run_prefect_floor(stack, srv), **database}
    # pnr_lean: the same `pnr up` without pnr's per-chunk events (what they cost, in the same run)
    env = {**srv.env(), "PNR_CHUNK_EVENTS": "false"} if tool == "pnr_lean" else srv.env()
    rec = {**bench.run_pnr(stack, f"warm/{srv.kind}", env, srv), **database}
    if tool == "pnr_lean":
        rec["variant"] = LEAN
    return rec


# -- set-up, machine facts, main -----------------------------------------------------------------------------
def managed_available(pnr: str) -> bool:
    try:
        return subprocess.run([pnr, "server", "--help"], capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def postgres_url(arg: str | None, notes: list[str]) -> str | None:
    if not arg:
        return None
    if arg != "auto":
        return arg
    script = ROOT / "scripts" / "ensure_postgres.sh"
    if not script.exists():
        notes.append("PostgreSQL skipped: scripts/ensure_postgres.sh does not exist (pass --postgres URL)")
        return None
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        notes.append(f"PostgreSQL skipped: ensure_postgres.sh failed ({proc.returncode}): {proc.stderr[-500:]}")
        return None
    return lines[-1].strip()


def ensure_images(stacks: list[str]) -> None:
    need = ["pnr-test/busybox:1"] + (["pnr-demo/redis:1", "pnr-demo/api:1", "pnr-demo/web:1"] * ("demo" in stacks))
    missing = [i for i in need if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode]
    if any(i.startswith("pnr-demo/") for i in missing):
        log("building the demo images (scripts/build_demo_images.sh)")
        subprocess.run(["bash", str(ROOT / "scripts" / "build_demo_images.sh")], check=True)
    if "pnr-test/busybox:1" in missing:
        raise SystemExit("pnr-test/busybox:1 is missing: run scripts/build_test_images.sh (or bench/cli.sh)")


def machine(pnr: str) -> dict[str, Any]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"

    m = report.machine()
    others = out("docker", "ps", "-q").split()
    dirty = bool(out("git", "status", "--porcelain", "--", "pnr"))  # uncommitted or new files in pnr/
    m.update(
        nproc=int(out("nproc") or 0),
        load_before=list(os.getloadavg()),
        kernel=platform.release(),
        pnr_git=out("git", "rev-parse", "--short", "HEAD") + ("+dirty" if dirty else ""),
        other_containers_running=len(others),
        pnr=pnr,
    )
    return m


def save(data: dict[str, Any], name: str) -> None:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(data, indent=1, default=str))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="chain6, outside6 + demo, warm server only, 2 repetitions, 1 min at rest"
    )
    p.add_argument("--stacks", nargs="*", default=list(PNR_UP_STACKS), choices=list(PNR_UP_STACKS), help="(none: skip)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="pnr up modes [default: all]")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--first-run-repeats", type=int, default=1, help="fresh-machine pairs per stack")
    p.add_argument(
        "--backend",
        nargs="+",
        default=["auto"],
        choices=("auto", "external", "managed", "ephemeral"),
        help="warm server(s): external = `prefect server start` + PREFECT_API_URL (the flow runs in `pnr up`), "
        "managed = `pnr server start` (server + runner; `pnr up` is a thin client), auto = managed when `pnr server "
        "--help` works, else external; ephemeral = add the ephemeral mode. The first one also serves concurrency "
        "and scale [default: auto]",
    )
    p.add_argument(
        "--at-rest-minutes",
        type=float,
        default=5.0,
        help="after the stacks, leave the warm backend idle this long and measure its memory and CPU (0: skip; "
        "--quick: 1) [default: 5]",
    )
    p.add_argument("--concurrency", type=int, default=6, help="pnr ups at once (0: skip)")
    p.add_argument("--concurrency-repeats", type=int, default=3, help="rounds of one alone and N at once")
    p.add_argument("--no-concurrency", action="store_true")
    p.add_argument("--scale", type=int, nargs="*", default=[100, 500], help="chunk counts (none: skip)")
    p.add_argument("--no-scale", action="store_true")
    p.add_argument(
        "--no-chunk-events-off",
        dest="chunk_events_off",
        action="store_false",
        help=f"at scale, skip the extra `pnr up` with {LEAN}",
    )
    p.add_argument("--no-floor", dest="floor", action="store_false", help="at scale, skip the Prefect floor")
    p.add_argument("--scale-repeats", type=int, default=1, help="rounds at scale, order reversed every other round")
    p.add_argument("--postgres", metavar="URL|auto", help="also scale on a PostgreSQL-backed server (auto: "
                   "scripts/ensure_postgres.sh)")  # fmt: skip
    p.add_argument("--compose-interval", default="1ms", help="compose healthcheck interval (engine minimum: 1ms)")
    p.add_argument(
        "--pnr-probe-interval",
        type=float,
        default=lower_bound.POLL,
        help="interval_seconds of pnr's probes [default: the lower bound's poll, 0.005 s; until 2026-12-03: 0.05]",
    )
    p.add_argument("--pnr", type=Path, default=VENV_BIN / "pnr", help="the pnr executable")
    p.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import pnr from the work tree (default: from a copy taken at the start, see Bench.snapshot)",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp folder (configs, server logs)")
    p.add_argument("--no-report", action="store_true", help="do not write bench/results/cli-latest.md")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.at_rest_minutes = min(args.at_rest_minutes, 1.0)
        args.stacks, args.modes = ["chain6", "outside6", "demo"], ["warm"]
        args.no_concurrency = args.no_scale = True
    if args.no_concurrency:
        args.concurrency = 0
    if args.no_scale:
        args.scale = []
    args.managed_available = managed_available(str(args.pnr))
    if "managed" in args.backend and not args.managed_available:
        p.error("--backend managed: `pnr server --help` failed (this pnr has no `pnr server` command)")
    auto = "managed" if args.managed_available else "external"
    args.backends = list(dict.fromkeys(auto if b == "auto" else b for b in args.backend if b != "ephemeral"))
    if "ephemeral" in args.backend and "ephemeral" not in args.modes:
        args.modes.append("ephemeral")
    needs_server = args.concurrency or args.scale or "warm" in args.modes
    args.backends = (args.backends or [auto]) if needs_server else []
    args.pnr_modes = [f"warm/{b}" for b in args.backends if "warm" in args.modes]
    args.pnr_modes += ["ephemeral"] if "ephemeral" in args.modes else []
    return args


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_images(args.stacks)
    bench = Bench(args)
    data: dict[str, Any] = {
        "kind": "cli",
        "tag": bench.tag,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(args.pnr),
        "notes": [],
        "warmups": [],
        "runs": [],
        "concurrency": None,
        "concurrency_outside": None,
        "scale": [],
        "at_rest": None,
    }
    args.postgres_url = postgres_url(args.postgres, data["notes"])
    data["args"]["postgres"] = "given" if args.postgres else None  # the URL holds a password
    t0 = time.monotonic()
    log(f"tag {bench.tag}; load average {data['machine']['load_before']}; pnr up modes: {args.pnr_modes}")
    try:
        with sigterm_as_interrupt():
            data["server_startup_s"] = {b: bench.server(b).startup_s for b in args.backends}
            bench.warm_up(data)
            bench_stacks(bench, data)
            if args.at_rest_minutes > 0 and args.backends:
                bench_at_rest(bench, data)
            if args.concurrency:
                bench_concurrency(bench, data)
            if args.scale:
                bench_scale(bench, data)
    finally:
        data["machine"]["load_after"] = list(os.getloadavg())
        data["duration_s"] = time.monotonic() - t0
        bench.close()
        data["notes"] += list(dict.fromkeys(bench.problems))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data["summary"] = cli_report.summarize(data)
    save(data, f"cli-{stamp}.json")
    save(data, "cli-latest.json")
    (HERE / "results" / "cli-partial.json").unlink(missing_ok=True)
    log(f"done in {data['duration_s'] / 60:.1f} min; raw results: bench/results/cli-{stamp}.json")
    if not args.no_report:
        md = cli_report.section(data)
        (HERE / "results" / "cli-latest.md").write_text(md + "\n")
        print(md)


if __name__ == "__main__":
    main()
