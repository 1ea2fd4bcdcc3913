"""The resident backend at rest: memory and CPU of pnr's server and runner members while nothing runs, from the
OS's own counters.

    .venv/bin/python bench/at_rest.py --state-dir DIR [--minutes 5] [--threads]

Memory: /proc/PID/smaps_rollup (what psutil's memory_full_info reads): RSS, PSS (shared pages divided among the
processes that map them, so PSS adds up across forked members) and USS (private pages). CPU: utime + stime of
/proc/PID/stat before and after the idle window, as % of one core. `--threads`: the same per thread of the
server (/proc/PID/task/TID/stat), to see which loop spends it.
"""

from __future__ import annotations

import argparse
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


def measure(procs: dict[str, int], seconds: float, threads: bool = False) -> dict[str, Any]:
    """Memory at the start, CPU over `seconds` of idle, per process and in total (CPU: % of one core)."""
    before = {name: cpu_ticks(f"/proc/{pid}/stat") for name, pid in procs.items()}
    per_thread = {name: thread_ticks(pid) for name, pid in procs.items()} if threads else {}
    memory = {name: memory_mb(pid) for name, pid in procs.items()}
    load0 = os.getloadavg()
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    rows: dict[str, Any] = {}
    for name, pid in procs.items():
        ticks = cpu_ticks(f"/proc/{pid}/stat") - before[name]
        rows[name] = {"pid": pid, **memory[name], "cpu_ticks": ticks, "cpu_pct": 100 * ticks / CLK_TCK / elapsed}
        if threads:
            after = thread_ticks(pid)
            busy = {t: after[t] - n for t, n in per_thread[name].items() if t in after and after[t] > n}
            rows[name]["threads"] = dict(sorted(busy.items(), key=lambda kv: -kv[1]))
    total = {k: sum(r[k] for r in rows.values()) for k in ("rss_mb", "pss_mb", "uss_mb", "cpu_ticks", "cpu_pct")}
    return {"seconds": elapsed, "clk_tck": CLK_TCK, "load_before": load0, "load_after": os.getloadavg(),
            "processes": rows, "total": total}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    lines = ["| process | RSS MB | PSS MB | USS MB | CPU ticks | % of a core |", "|---|---|---|---|---|---|"]
    rows = {**result["processes"], "**total**": result["total"]}
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['rss_mb']:.0f} | {r['pss_mb']:.0f} | {r['uss_mb']:.0f} | {r['cpu_ticks']} "
            f"| {r['cpu_pct']:.2f} |"
        )
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
