"""Where each run of a burst spends its time before its first container: N `pnr up`s of the outside-shaped
3-chunk chain at once against a backend of its own, and one alone, for ROUNDS rounds. Per run, seconds after
its `pnr up` process started: its header line (the client has read and checked the config), its `pnr-up` flow
run created and Running (from Prefect's API), its first container starting (its progress line), its exit;
printed as the medians of the burst, with the ratio of the burst's median exit over the one alone's of the same
round, and the CPU per run of pnr's server, its runner, the container engine and the `pnr up` processes.

    .venv/bin/python bench/burst_timeline.py [PNR_RUNNERS]      # ROUNDS=3 by default
    AB=PNR_CHUNK_EVENTS=false .venv/bin/python bench/burst_timeline.py
        # each round twice, with and without that setting in the `pnr up` processes' environment (the run reads
        # its settings from its caller's), the order reversed every other round

Everything it creates carries the pnr.bench.run label and is removed at the end; its backend is stopped and its
temporary folder (configs, state, runtime folders) removed.
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_burst import Backend, engine_cpu, tree_cpu
from stacks import outside, pnr_config


def _at(stamp: str | None, began: float) -> float | None:
    return datetime.datetime.fromisoformat(stamp).timestamp() - began if stamp else None


def one_burst(backend: Backend, api: str, configs: list[Path], label: str) -> float:
    """The burst's median exit (seconds after the start); prints its timeline and CPU per run."""
    server, runner = backend.pid("server"), backend.pid("runner")
    cpu0 = (tree_cpu(server), tree_cpu(runner), engine_cpu())
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    began_wall, began = time.time(), time.monotonic()
    procs = [backend.start_up(c, subprocess.PIPE, subprocess.STDOUT) for c in configs]
    outputs: list[list[tuple[float, str]]] = [[] for _ in procs]

    def read(i: int) -> None:
        assert procs[i].stdout is not None
        for line in procs[i].stdout:
            outputs[i].append((time.monotonic() - began, line.rstrip()))
        procs[i].wait()
        outputs[i].append((time.monotonic() - began, "EXIT"))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    now = resource.getrusage(resource.RUSAGE_CHILDREN)  # the `pnr up` processes, reaped above
    clients = now.ru_utime + now.ru_stime - reaped.ru_utime - reaped.ru_stime
    time.sleep(2)  # what the server records after the runs' end
    cpu1 = (tree_cpu(server), tree_cpu(runner), engine_cpu())
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
    rows = []
    for config, lines in zip(configs, outputs, strict=True):
        mine = [
            r
            for r in runs
            if (r.get("parameters") or {}).get("config_path", "").endswith(config.name)
            and not r.get("parent_task_run_id")
            and (_at(r["created"], began_wall) or -1) > 0
        ]
        flow = mine[0] if mine else {}
        rows.append(
            {
                "header": lines[0][0],
                "created": _at(flow.get("created"), began_wall),
                "running": _at(flow.get("start_time"), began_wall),
                "first_start": next((t for t, line in lines if "starting" in line and " s0 " in line), None),
                "exit": lines[-1][0],
            }
        )
    for c in configs:
        backend.down(c)

    def median(key: str) -> float:
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.median(values) if values else float("nan")

    pool = backend.env.get("PNR_RUNNERS", "default")
    print(
        f"PNR_RUNNERS={pool} {label}: header {median('header'):.2f} flow run created {median('created'):.2f} "
        f"Running {median('running'):.2f} first container {median('first_start'):.2f} exit {median('exit'):.2f} "
        f"(last {max(r['exit'] for r in rows):.2f}); CPU per run: server {(cpu1[0] - cpu0[0]) / len(rows):.2f} s, "
        f"runner {(cpu1[1] - cpu0[1]) / len(rows):.2f} s, engine {(cpu1[2] - cpu0[2]) / len(rows):.2f} s, "
        f"`pnr up` {clients / len(rows):.2f} s",
        flush=True,
    )
    return median("exit")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pnr-burst-timeline-"))
    tag = uuid.uuid4().hex[:6]
    configs = []
    for i in range(6):
        cfg = pnr_config(outside(3), f"bt{tag}{i}", f"bt{tag}{i}_", f"burst-timeline-{tag}", interval=0.02)
        path = tmp / f"bt{i}.json"
        path.write_text(json.dumps(cfg))
        configs.append(path)
    backend = Backend(tmp)
    if len(sys.argv) > 1:
        backend.env["PNR_RUNNERS"] = sys.argv[1]
    api = f"http://127.0.0.1:{backend.env['PNR_SERVER_PORT']}/api"
    try:
        backend.pnr("server", "start")
        backend.warm(configs)
        setting = os.environ.get("AB", "")
        variants = [""] + ([setting] if setting else [])
        for round_ in range(int(os.environ.get("ROUNDS", "3"))):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                name, _, value = variant.partition("=")
                backend.env.pop(setting.partition("=")[0], None)
                if name:
                    backend.env[name] = value
                label = f" with {variant}" if variant else ""
                alone = one_burst(backend, api, configs[:1], f"one alone{label}")
                at_once = one_burst(backend, api, configs, f"{len(configs)} at once{label}")
                print(f"  ratio{label}: {at_once / alone:.2f}", flush=True)
    finally:
        backend.pnr("server", "stop", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
