"""The resident backend at rest: memory and CPU of pnr's server and runner members while nothing runs, from the
OS's own counters.

    .venv/bin/python bench/at_rest.py --state-dir DIR [--minutes 5] [--threads]

Memory: /proc/PID/smaps_rollup (what psutil's memory_full_info reads) at the end of the idle window (and at its
start, under "start"): RSS, PSS (shared pages divided among the processes that map them, so PSS adds up across
forked members) and USS (private pages). CPU: utime + stime of /proc/PID/stat over the window, as % of one core;
a runner worker that ends during the window (PNR_RUNNER_IDLE_SECONDS) counts its CPU until then and no memory.
`--threads`: the same per thread of the server (/proc/PID/task/TID/stat), to see which loop spends it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_path: str) -> int:
    """utime + stime of a /proc/.../stat file, in clock ticks."""
    with open(stat_path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of a process, in MB."""
    kb: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                kb[key] = int(parts[0])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss_mb": kb.get("Rss", 0) / 1024, "pss_mb": kb.get("Pss", 0) / 1024, "uss_mb": uss / 1024}


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks so far per thread of a process, keyed "TID name"."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
            out[f"{tid} {name}"] = cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
    return out


def backend_processes(state_dir: Path) -> dict[str, int]:
    """The server and every runner member recorded in a PNR_STATE_DIR: {"server": pid, "runner-0": pid, ...}."""
    procs: dict[str, int] = {}
    server = state_dir / "server.pid"
    if server.exists():
        procs["server"] = int(json.loads(server.read_text())["pid"])
    runner = state_dir / "runner.pid"
    if runner.exists():
        leader = int(json.loads(runner.read_text())["pid"])
        members = [leader, *sorted(int(c) for c in _children(leader))]
        procs.update({f"runner-{i}": pid for i, pid in enumerate(members)})
    return procs


def _children(pid: int) -> list[str]:
    kids: list[str] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            kids += fh.read().split()
    return kids


def measure(procs: dict[str, int], seconds: float, threads: bool = False, step: float = 5.0) -> dict[str, Any]:
    """CPU over `seconds` of idle and memory at its end, per process and in total (CPU: % of one core). A process
    that ends during the window (a runner worker idle long enough) counts its CPU until last seen and no memory;
    `start` has the memory of every process at the window's start."""
    before = {name: cpu_ticks(f"/proc/{pid}/stat") for name, pid in procs.items()}
    last = dict(before)
    per_thread = {name: thread_ticks(pid) for name, pid in procs.items()} if threads else {}
    start = {name: memory_mb(pid) for name, pid in procs.items()}
    load0 = os.getloadavg()
    t0 = time.monotonic()
    while (left := seconds - (time.monotonic() - t0)) > 0:
        time.sleep(min(step, left))
        for name, pid in procs.items():
            with contextlib.suppress(OSError, ValueError):
                last[name] = cpu_ticks(f"/proc/{pid}/stat")
    elapsed = time.monotonic() - t0
    rows: dict[str, Any] = {}
    for name, pid in procs.items():
        try:
            memory, ended = memory_mb(pid), False
        except (OSError, ValueError):
            memory, ended = {"rss_mb": 0.0, "pss_mb": 0.0, "uss_mb": 0.0}, True
        ticks = last[name] - before[name]
        rows[name] = {"pid": pid, **memory, "cpu_ticks": ticks, "cpu_pct": 100 * ticks / CLK_TCK / elapsed}
        if ended:
            rows[name]["ended"] = True
        if threads and not ended:
            after = thread_ticks(pid)
            busy = {t: after[t] - n for t, n in per_thread[name].items() if t in after and after[t] > n}
            rows[name]["threads"] = dict(sorted(busy.items(), key=lambda kv: -kv[1]))
    total = {k: sum(r[k] for r in rows.values()) for k in ("rss_mb", "pss_mb", "uss_mb", "cpu_ticks", "cpu_pct")}
    start_total = {k: sum(m[k] for m in start.values()) for k in ("rss_mb", "pss_mb", "uss_mb")}
    return {"seconds": elapsed, "clk_tck": CLK_TCK, "load_before": load0, "load_after": os.getloadavg(),
            "processes": rows, "total": total, "start": {"processes": start, "total": start_total}}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    lines = ["| process | RSS MB | PSS MB | USS MB | CPU ticks | % of a core |", "|---|---|---|---|---|---|"]
    rows = {**result["processes"], "**total**": result["total"]}
    for name, r in rows.items():
        shown = f"{name} (ended)" if r.get("ended") else name
        lines.append(
            f"| {shown} | {r['rss_mb']:.0f} | {r['pss_mb']:.0f} | {r['uss_mb']:.0f} | {r['cpu_ticks']} "
            f"| {r['cpu_pct']:.2f} |"
        )
    if start := result.get("start"):
        mb = start["total"]
        lines.append(f"| at the start | {mb['rss_mb']:.0f} | {mb['pss_mb']:.0f} | {mb['uss_mb']:.0f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", type=Path, required=True, help="the PNR_STATE_DIR of a running pnr server")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--threads", action="store_true", help="CPU ticks per thread too")
    args = p.parse_args(argv)
    procs = backend_processes(args.state_dir)
    if "server" not in procs:
        sys.exit(f"no pnr server recorded in {args.state_dir} (start one: pnr server start)")
    result = measure(procs, args.minutes * 60, args.threads)
    print(json.dumps(result, indent=1))
    print(table(result))


if __name__ == "__main__":
    main()
