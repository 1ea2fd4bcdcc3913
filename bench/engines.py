"""One domain of N chunks on one Docker engine vs the same domain split over two engines (N/2 each), through
the command line (`pnr up` as a whole process, pnr's resident backend), side by side in one run.

    bench/engines.py [--chunks 100] [--repeats 2]

Starts a second real dockerd with scripts/second_engine.sh (its own folder, bridge and loopback address, so a
test suite's second engine is left alone), stops it at the end. Every container carries the bench label and is
removed after each repetition. Writes bench/results/engines-<stamp>.json and bench/results/engines.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from stacks import layered, pnr_config  # noqa: E402

PNR = str(ROOT / ".venv" / "bin" / "pnr")
ENGINE2 = {
    "PNR_ENGINE2_DIR": "/tmp/pnr-engine2-bench",
    "PNR_ENGINE2_BRIDGE": "pnrb7",
    "PNR_ENGINE2_BRIDGE_CIDR": "10.217.0.1/24",
    "PNR_ENGINE2_POOL": "10.218.0.0/16",
    "PNR_ENGINE2_TCP": "127.0.0.3:2375",
}


def engine2(action: str) -> None:
    env = {**os.environ, **ENGINE2}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "second_engine.sh"), action],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def domain(chunks: int, split: bool, tag: str) -> dict[str, Any]:
    name = f"eng{tag}{'s' if split else 'o'}"
    config = pnr_config(layered(chunks, depth=10), name, f"{name}-", tag)
    if split:
        config["engines"] = {"two": {"host": "tcp://" + ENGINE2["PNR_ENGINE2_TCP"], "address": "127.0.0.3"}}
        for i, chunk in enumerate(config["cpuxs"]["bench"]["design_chunks"]):
            if i % 2:
                chunk["engine"] = "two"
    return config


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    began = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and proc.stderr is not None:
        print(proc.stderr.read()[-2000:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="pnr-engines-bench-"))
    env = {**os.environ, "PNR_STATE_DIR": str(tmp / "state"), "PNR_SERVER_PORT": str(_free_port())}
    env.pop("PREFECT_API_URL", None)
    rows: dict[str, list[dict[str, float]]] = {"one engine": [], "two engines": []}
    engine2("start")
    try:
        subprocess.run([PNR, "server", "start"], env=env, check=True, capture_output=True)
        warm = tmp / "warm.json"
        warm.write_text(json.dumps(domain(10, False, tag + "w")))
        subprocess.run([PNR, "up", str(warm), "--runtime-dir", str(tmp / "rt")], env=env, capture_output=True)
        subprocess.run([PNR, "down", str(warm), "--runtime-dir", str(tmp / "rt")], env=env, capture_output=True)
        for rep in range(options.repeats):
            for label, split in (("one engine", False), ("two engines", True)):
                cfg = tmp / f"{label.replace(' ', '-')}-{rep}.json"
                cfg.write_text(json.dumps(domain(options.chunks, split, tag)))
                wall, cpu, code = timed([PNR, "up", str(cfg), "--runtime-dir", str(tmp / "rt")], env)
                down = timed([PNR, "down", str(cfg), "--runtime-dir", str(tmp / "rt")], env)
                rows[label].append({"wall": wall, "cpu": cpu, "exit": code, "down_wall": down[0]})
                print(f"{label} #{rep}: up {wall:.2f} s (exit {code}), down {down[0]:.2f} s", flush=True)
    finally:
        subprocess.run([PNR, "server", "stop"], env=env, capture_output=True)
        engine2("purge")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    data = {"chunks": options.chunks, "repeats": options.repeats, "load": os.getloadavg(), "rows": rows}
    (results / f"engines-{stamp}.json").write_text(json.dumps(data, indent=1))
    lines = [
        f"## One engine vs two engines ({options.chunks} chunks, `pnr up` through the command line)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/engines.py` ({options.repeats} repetitions; load "
        f"average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}). The same domain (10 layers; each "
        "chunk waits on one of the layer above), all chunks on the local engine, or every second chunk on a "
        "second real dockerd on this machine (127.0.0.3).",
        "",
        "| layout | `pnr up` wall (median [min–max]) | `pnr up` CPU | `pnr down` wall | exit codes |",
        "|---|---:|---:|---:|---|",
    ]
    for label, runs in rows.items():
        walls = [r["wall"] for r in runs]
        lines.append(
            f"| {label} | {statistics.median(walls):.2f} s [{min(walls):.2f}–{max(walls):.2f}] | "
            f"{statistics.median(r['cpu'] for r in runs):.2f} s | "
            f"{statistics.median(r['down_wall'] for r in runs):.2f} s | "
            f"{', '.join(str(int(r['exit'])) for r in runs)} |"
        )
    (results / "engines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
