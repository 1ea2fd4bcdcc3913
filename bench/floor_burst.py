"""Six at once for the lower bound and for Prefect's floor, each in warm processes: how much a burst of N
bring-ups of the outside-shaped 3-chunk chain costs over one alone when nothing of pnr's runs.

N worker processes import docker-py and Prefect once and bring up one warm-up stack each; then, per round, one
worker brings its stack up alone and all N bring theirs up at the same moment — first with the lower bound's
threads (bench/lower_bound.py), then with each container's wait, start and probe as a Prefect task of one flow run
(bench/prefect_floor.py) against one Prefect server. A worker times its own bring-up (network created → last
service ready), so neither a process start nor an import is in the figures: it is the least that a burst costs
on this machine without Prefect, and with Prefect's bookkeeping of one flow run and one task run per container.
`bench/burst_timeline.py` measures pnr's own bursts (whole `pnr up` processes against pnr's warm backend).

    .venv/bin/python bench/floor_burst.py [--n 6] [--rounds 3] [--api URL]

Without --api it starts pnr's Prefect server in a temporary state dir and stops it at the end. Everything it
creates carries the pnr.bench.run label and is removed after each round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacks import BENCH_LABEL, Stack, free_port, outside, remove_containers


def _worker(conn: Connection, api_url: str) -> None:
    """One warm process: runs the bring-ups it is sent, answers each with its wall and CPU."""
    os.environ["PREFECT_API_URL"] = api_url
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import docker
    import lower_bound
    import prefect_floor

    client = docker.from_env(timeout=300)
    executors = {"lower bound": lower_bound.threads, "Prefect floor": prefect_floor.as_prefect_tasks}
    while True:
        job = conn.recv()
        if job is None:
            return
        kind, stack, prefix, tag = job
        c0 = time.process_time()
        try:
            res = lower_bound.run(client, Stack.from_dict(stack), prefix, f"{prefix}net", tag, executors[kind])
            conn.send({"wall": res["wall"], "cpu": time.process_time() - c0})
        except Exception as exc:  # the round is reported as failed, the others go on
            conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _server_ticks(pid: int | None) -> int:
    if pid is None:
        return 0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return round((times.user + times.system) * 100)


class Bench:
    def __init__(self, n: int, api_url: str, server_pid: int | None) -> None:
        import docker

        self.api = docker.from_env(timeout=300).api
        self.server_pid = server_pid
        self.tag = f"floor-burst-{uuid.uuid4().hex[:8]}"
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, api_url), daemon=True)
            proc.start()
            self.pipes.append(here)
            self.procs.append(proc)

    def burst(self, kind: str, n: int) -> tuple[list[float], float, float]:
        """n workers bring their stacks up at once: their walls, the client CPU and the server CPU per run."""
        stacks = [outside(3).to_dict() for _ in range(n)]
        ticks = _server_ticks(self.server_pid)
        for i, (pipe, stack) in enumerate(zip(self.pipes[:n], stacks, strict=True)):
            pipe.send((kind, stack, f"fb{uuid.uuid4().hex[:6]}{i}-", self.tag))
        answers = [pipe.recv() for pipe in self.pipes[:n]]
        server_cpu = (_server_ticks(self.server_pid) - ticks) / 100 / n
        self.clean()
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise RuntimeError("; ".join(errors[:3]))
        return [a["wall"] for a in answers], statistics.median(a["cpu"] for a in answers), server_cpu

    def clean(self) -> None:
        label = {"label": f"{BENCH_LABEL}={self.tag}"}
        remove_containers(self.api, [c["Id"] for c in self.api.containers(all=True, filters=label)])
        for net in self.api.networks(filters=label):
            self.api.remove_network(net["Id"])

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        self.clean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6, help="bring-ups at once [6]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one alone and n at once [3]")
    parser.add_argument("--api", help="a running Prefect server's API URL [pnr's server, started for the run]")
    args = parser.parse_args()

    from pnr.backend import server

    state = None if args.api else tempfile.TemporaryDirectory(prefix="pnr-floor-burst-")
    if state is not None:
        info = server.start(port=free_port(), state_dir=Path(state.name))
        api_url, server_pid = info.api_url, info.pid
    else:
        api_url, server_pid = args.api, None
    bench = Bench(args.n, api_url, server_pid)
    results: dict[str, list[dict[str, Any]]] = {"lower bound": [], "Prefect floor": []}
    try:
        for kind in results:  # the warm-up: every worker's first bring-up of each kind, not counted
            bench.burst(kind, args.n)
        for r in range(args.rounds):
            for kind in results if r % 2 == 0 else reversed(list(results)):
                alone, alone_cpu, alone_server = bench.burst(kind, 1)
                walls, cpu, server_cpu = bench.burst(kind, args.n)
                row = {
                    "alone": alone[0],
                    "at_once_median": statistics.median(walls),
                    "at_once_max": max(walls),
                    "ratio": statistics.median(walls) / alone[0],
                    "cpu_alone": alone_cpu,
                    "cpu_at_once": cpu,
                    "server_cpu_alone": alone_server,
                    "server_cpu_at_once": server_cpu,
                }
                results[kind].append(row)
                print(
                    f"{kind}: one alone {row['alone']:.2f} s, each of {args.n} at once {row['at_once_median']:.2f} s "
                    f"(slowest {row['at_once_max']:.2f} s) = {row['ratio']:.2f}x; client CPU per run "
                    f"{alone_cpu:.2f} / {cpu:.2f} s, server CPU per run {alone_server:.2f} / {server_cpu:.2f} s",
                    flush=True,
                )
    finally:
        bench.close()
        if state is not None:
            server.stop(state_dir=Path(state.name))
            state.cleanup()
    for kind, rows in results.items():
        if rows:
            print(f"{kind}: median ratio {statistics.median(r['ratio'] for r in rows):.2f}x over {len(rows)} rounds")
    print(json.dumps({"n": args.n, "when": time.strftime("%Y-%m-%d %H:%M"), "results": results}))


if __name__ == "__main__":
    main()
