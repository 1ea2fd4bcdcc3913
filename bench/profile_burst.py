"""Where the CPU of N `pnr up`s at once goes: the six-at-once burst of `bench/cli.py` (N 3-chunk chains, each
chunk's httpd answering 1 s after its start), against a backend of its own, twice: once without a profiler, for
each party's CPU from the OS's counters (the `pnr up` processes, pnr's Prefect server, pnr's runner, the
container engine: dockerd, containerd and their shims), and once with py-spy sampling the server and the runner
(`--gil`: only a thread that holds the GIL is sampled, so waiting is not counted) to split their Python time
between Prefect's parts and pnr's.

    .venv/bin/pip install -e '.[bench]'      # py-spy
    .venv/bin/python bench/profile_burst.py [--n 6] [--json FILE]

Everything it creates carries the pnr.bench.run label and is removed at the end; its backend is stopped.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stacks import BENCH_LABEL, chain, pnr_config  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PNR = str(VENV_BIN / "pnr")
RATE = 200  # samples per second

# (pattern in a sampled stack, the part it is counted to), first match wins
PARTS = [
    ("pnr/probes", "pnr: probes"),
    ("docker/", "pnr: engine calls (docker-py)"),
    ("pnr/engines", "pnr: engine calls (docker-py)"),
    ("pnr/prefect/artifacts", "pnr: artifacts"),
    ("pnr/prefect/events", "pnr: chunk events"),
    ("pnr/lifecycle", "pnr: lifecycle (gates, signals, chunks)"),
    ("pnr/model", "pnr: config"),
    ("pnr/backend/server_app", "server: SQL (through pnr's statement wrappers)"),
    ("pnr/backend", "pnr: runner (requests, the event stream to `pnr up`)"),
    ("pnr/prefect", "pnr: flows"),
    ("pnr/", "pnr: other"),
    ("stream_events_in", "server: events received (websocket)"),
    ("task_run_recorder", "server: task-run recorder"),
    ("event_persister", "server: event persister"),
    ("events/triggers", "server: automations (triggers)"),
    ("prefect/server/api/", "server: API handlers"),
    ("sqlalchemy", "server: SQL"),
    ("starlette", "server: HTTP middleware"),
    ("uvicorn/protocols", "server: HTTP parsing"),
    ("docket", "server: docket (periodic services)"),
    ("flow_engine", "Prefect: flow engine"),
    ("task_engine", "Prefect: task engine"),
    ("prefect/events", "Prefect: events client"),
    ("prefect/logging", "Prefect: logs client"),
    ("prefect/client", "Prefect: API client"),
    ("httpx", "Prefect: API client"),
    ("aiosqlite", "server: SQL"),
    ("prefect/", "Prefect: other"),
]


def log(msg: str) -> None:
    print(f"[profile-burst {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def part_of(stack: str) -> str:
    return next((name for pattern, name in PARTS if pattern in stack), "other")


def summarize(raw: Path) -> dict[str, float]:
    """Seconds of GIL-holding samples per part in a py-spy raw (collapsed) profile."""
    parts: collections.Counter[str] = collections.Counter()
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            parts[part_of(stack)] += int(count)
    return {k: v / RATE for k, v in parts.most_common()}


class Backend:
    def __init__(self, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PNR_"))}
        self.env.update(HOME=str(tmp / "home"), PNR_STATE_DIR=str(tmp / "state"), PNR_SERVER_PORT=str(_free_port()))
        (tmp / "home").mkdir()
        self.state = tmp / "state"

    def pnr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([PNR, *args], env=self.env, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise RuntimeError(f"pnr {' '.join(args)}: {done.stdout[-800:]}{done.stderr[-800:]}")
        return done

    def pid(self, name: str) -> int:
        return int(json.loads((self.state / f"{name}.pid").read_text())["pid"])

    def start_up(self, config: Path, stdout: int, stderr: int) -> subprocess.Popen[str]:
        """A `pnr up` of `config` (its runtime folder beside it), running."""
        command = [PNR, "up", str(config), "--runtime-dir", str(config.with_suffix(""))]
        return subprocess.Popen(command, env=self.env, stdout=stdout, stderr=stderr, text=True)

    def down(self, config: Path, check: bool = False) -> None:
        """`pnr down`, killing at once: no bench times the tear-down, and outside()'s httpd (PID 1, no TERM trap)
        would otherwise wait its whole grace period per container."""
        self.pnr("down", str(config), "--runtime-dir", str(config.with_suffix("")), "--timeout", "0", check=check)

    def warm(self, configs: list[Path]) -> None:
        """Each domain once, alone: the backend has seen a run, and a runner worker is up."""
        for c in configs:
            self.pnr("up", str(c), "--runtime-dir", str(c.with_suffix("")))
            self.down(c, check=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu(pid: int) -> float:
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
    return total


def engine_cpu() -> float:
    """CPU of the container engine's processes (dockerd, containerd, shims, docker-proxy), summed."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith(("dockerd", "containerd", "docker-proxy", "runc")):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def burst(backend: Backend, configs: list[Path]) -> dict[str, Any]:
    server, runner = backend.pid("server"), backend.pid("runner")
    before = (tree_cpu(server), tree_cpu(runner), engine_cpu())
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    procs = [backend.start_up(c, subprocess.DEVNULL, subprocess.PIPE) for c in configs]

    def ended(proc: subprocess.Popen[str]) -> float:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"pnr up failed: {err[-800:]}")
        return time.monotonic() - began

    with ThreadPoolExecutor(len(procs)) as pool:  # each run's own end, not the order they are waited for in
        walls = list(pool.map(ended, procs))
    now = resource.getrusage(resource.RUSAGE_CHILDREN)  # the `pnr up` processes, reaped above
    clients = now.ru_utime + now.ru_stime - reaped.ru_utime - reaped.ru_stime
    time.sleep(3)  # what the server records after the runs' end
    after = (tree_cpu(server), tree_cpu(runner), engine_cpu())
    for c in configs:
        backend.down(c)
    return {
        "walls": walls,
        "server_cpu": after[0] - before[0],
        "runner_cpu": after[1] - before[1],
        "engine_cpu": after[2] - before[2],
        "clients_cpu": clients,
    }


def profiled_burst(backend: Backend, configs: list[Path], out: Path) -> dict[str, dict[str, float]]:
    spies = {}
    for name, extra in (("server", []), ("runner", ["--subprocesses"])):
        raw = out / f"{name}.raw"
        cmd = [str(VENV_BIN / "py-spy"), "record", "-p", str(backend.pid(name)), *extra, "--gil", "-r", str(RATE)]
        spies[name] = (
            subprocess.Popen([*cmd, "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            raw,
        )
    time.sleep(1)
    try:
        burst(backend, configs)
    finally:
        for proc, _ in spies.values():
            proc.send_signal(signal.SIGINT)
        for proc, _ in spies.values():
            proc.wait(60)
    return {name: summarize(raw) for name, (_, raw) in spies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="pnr ups at once")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if not shutil.which("py-spy", path=str(VENV_BIN)):
        sys.exit("py-spy is missing: .venv/bin/pip install -e '.[bench]'")
    tmp = Path(tempfile.mkdtemp(prefix="pnr-profile-burst-"))
    tag = uuid.uuid4().hex[:6]
    configs = []
    for i in range(args.n):
        cfg = pnr_config(chain(3, delay=1.0), f"pb{tag}{i}", f"pb{tag}{i}_", f"profile-burst-{tag}")
        path = tmp / f"pb{i}.json"
        path.write_text(json.dumps(cfg))
        configs.append(path)
    backend = Backend(tmp)
    try:
        backend.pnr("server", "start")
        backend.warm(configs)
        alone = burst(backend, configs[:1])
        log(f"one alone: {alone['walls'][0]:.2f}s")
        plain = burst(backend, configs)
        log(f"{args.n} at once: {[round(w, 2) for w in plain['walls']]}")
        parts = profiled_burst(backend, configs, tmp)
    finally:
        backend.pnr("server", "stop", check=False)
        with contextlib.suppress(Exception):
            import docker

            api = docker.from_env()
            for c in api.containers.list(all=True, filters={"label": f"{BENCH_LABEL}=profile-burst-{tag}"}):
                c.remove(force=True)
    n = args.n
    print(f"\n{n} `pnr up`s at once (3-chunk chains), CPU per run from the OS's counters (no profiler):")
    print(f"  {'`pnr up` process':<22} {plain['clients_cpu'] / n:.2f} s   (one alone: {alone['clients_cpu']:.2f} s)")
    for key, label in (
        ("server_cpu", "pnr's Prefect server"),
        ("runner_cpu", "pnr's runner"),
        ("engine_cpu", "container engine"),
    ):
        print(f"  {label:<22} {plain[key] / n:.2f} s   (one alone: {alone[key]:.2f} s)")
    for name, table in parts.items():
        total = sum(table.values())
        print(f"\n{name}, with py-spy --gil attached: {total / n:.2f} s per run holding the GIL")
        for part, seconds in table.items():
            print(f"  {seconds / n:6.3f} s  {100 * seconds / total:4.1f} %  {part}")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "alone": alone, "burst": plain, "profile": parts}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
