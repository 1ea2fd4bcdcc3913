"""`pnr up` as a user on a new machine runs it: HOME a new empty folder for the whole run, no PREFECT_*/PNR_*
setting and none of the benchmark's own (DO_NOT_TRACK, PYTHONUNBUFFERED), pnr's resident backend started by the
first call and left running between calls; the lower bound of the same stack right after each call (the same
minute, so the ratio holds on a busy machine). Per link, the engine's own start times of each container
(`docker inspect` State.StartedAt) and pnr's chunk-state times (gate open, first probe attempt, ready):

    .venv/bin/python bench/fresh_home.py [--stack outside6] [--calls 6] [--burst 6] [--json FILE]
                                         [--setting PNR_EARLY_START=false]

Prints one line per call and the per-link medians; `--burst N`: then N `pnr up`s of different 3-chunk
outside-shaped domains at once, against one alone (and the same for the lower bound); --json writes every
figure. Everything it creates carries the pnr.bench.run label and is removed at the end; the backend it
started is stopped (`pnr server stop`)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cli import PNR_UP_STACKS, VENV_BIN, Running, state_pids, timed  # noqa: E402
from stacks import BENCH_LABEL, Stack, outside, pnr_config, remove_containers  # noqa: E402

KEEP = ("PATH", "LANG", "LC_ALL", "TERM", "TZ")  # what a login shell of a new user has besides HOME


def user_env(home: Path) -> dict[str, str]:
    """A new user's environment: HOME, PATH (the venv's bin first, as an activated venv has it), the locale."""
    env = {k: v for k, v in os.environ.items() if k in KEEP}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    return env


def started_at(api: Any, tag: str) -> dict[str, float]:
    """Container name → the engine's start time (epoch seconds) of every container of this run."""
    out = {}
    for c in api.containers(all=True, filters={"label": f"{BENCH_LABEL}={tag}"}):
        stamp = api.inspect_container(c["Id"])["State"]["StartedAt"]
        head, _, frac = stamp.rstrip("Z").partition(".")
        out[c["Names"][0].lstrip("/")] = datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")
    return out


def links(stack: Stack, prefix: str, starts: dict[str, float]) -> list[float]:
    """Seconds from one container's start to the next one's, along the chain."""
    names = [f"{prefix}{s.name}" for s in stack.services]
    return [starts[b] - starts[a] for a, b in itertools.pairwise(names) if a in starts and b in starts]


def chunk_times(runtime: Path) -> dict[str, dict[str, Any]]:
    """The chunk-state file's rows (started_at: gate open, first_probe_at, ready_at), by chunk."""
    for path in runtime.rglob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("chunks"), dict):
                return dict(data["chunks"])
    return {}


def pnr_steps(stack: Stack, prefix: str, starts: dict[str, float], chunks: dict[str, Any]) -> dict[str, list[float]]:
    """Per chunk: gate open → engine start (create + start), engine start → first probe attempt, ready → the next
    chunk's gate open (signal write, gate wake-up)."""
    steps: dict[str, list[float]] = {"create_start": [], "to_first_probe": [], "ready_to_next_gate": []}
    names = [s.name for s in stack.services]
    for i, name in enumerate(names):
        row, start = chunks.get(name) or {}, starts.get(f"{prefix}{name}")
        if row.get("started_at") and start:
            steps["create_start"].append(start - row["started_at"])
        if row.get("first_probe_at") and start:
            steps["to_first_probe"].append(row["first_probe_at"] - start)
        nxt = chunks.get(names[i + 1]) if i + 1 < len(names) else None
        if nxt and nxt.get("started_at") and row.get("ready_at"):
            steps["ready_to_next_gate"].append(nxt["started_at"] - row["ready_at"])
    return steps


class FreshHome:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = uuid.uuid4().hex[:6]
        self.home = Path(tempfile.mkdtemp(prefix=f"pnrhome-{self.tag}-"))
        self.env = user_env(self.home)
        for setting in args.setting:
            name, _, value = setting.partition("=")
            if not name.startswith("PNR_"):
                raise SystemExit(f"--setting {setting}: a pnr setting is PNR_NAME=VALUE")
            self.env[name] = value
        self.api = docker.from_env(timeout=300).api
        self.seq = 0

    def prefix(self, what: str) -> str:
        self.seq += 1
        return f"ph{self.tag}-{self.seq:02d}-{what}-"

    def start_pnr(self, stack: Stack, what: str = "pn") -> tuple[Running, str, Path, Path]:
        prefix = self.prefix(what)
        domain = prefix.rstrip("-")
        cfg = self.home / f"{domain}.json"
        cfg.write_text(json.dumps(pnr_config(stack, domain, prefix, self.tag)))
        runtime = self.home / f"runtime-{domain}"
        t = Running([str(VENV_BIN / "pnr"), "up", str(cfg), "--runtime-dir", str(runtime)], self.env, self.home)
        return t, prefix, cfg, runtime

    def down(self, cfg: Path, runtime: Path) -> int:
        cmd = [str(VENV_BIN / "pnr"), "down", str(cfg), "--runtime-dir", str(runtime), "-t", "2"]
        return timed(cmd, self.env).rc

    def burst(self, n: int) -> dict[str, Any]:
        """One 3-chunk `pnr up` alone, then `n` at once (different domains); the lower bound the same way."""
        alone = self.pnr(outside(3))
        runs = [self.start_pnr(outside(3), f"k{i}") for i in range(n)]
        results = [t.result(600) for t, _p, _c, _r in runs]
        for _t, _p, cfg, runtime in runs:
            self.down(cfg, runtime)
        self.sweep()
        lb_alone = self.lower_bound(outside(3))
        lbs = []
        for i in range(n):
            prefix = self.prefix(f"lk{i}")
            spec = self.home / f"{prefix}stack.json"
            spec.write_text(json.dumps(outside(3).to_dict()))
            cmd = [sys.executable, str(HERE / "lower_bound.py"), str(spec), "--prefix", prefix, "--tag", self.tag]
            lbs.append((prefix, Running(cmd, {**self.env, "PYTHONPATH": str(HERE)})))
        lb_results = [r.result(600) for _p, r in lbs]
        for prefix, _r in lbs:
            self.sweep(network=f"{prefix}net")
        return {
            "n": n,
            "alone": alone["wall"],
            "each": [r.wall for r in results],
            "rcs": [r.rc for r in results],
            "lb_alone": lb_alone["wall"],
            "lb_each": [r.wall for r in lb_results],
        }

    def pnr(self, stack: Stack) -> dict[str, Any]:
        t, prefix, cfg, runtime = self.start_pnr(stack)
        res = t.result(600)
        starts = started_at(self.api, self.tag)
        chunks = chunk_times(runtime)
        ready = [c.get("ready_at") or 0 for c in chunks.values()]
        rec = {
            "tool": "pnr",
            "rc": res.rc,
            "wall": res.wall,
            "cpu": res.cpu,
            "links": links(stack, prefix, starts),
            "steps": pnr_steps(stack, prefix, starts, chunks),
            # the process's start → its first container's start; the last ready → the process's exit
            "to_first_start": min(starts.values()) - (time.time() - (time.monotonic() - t.t0)) if starts else None,
            "last_ready_to_exit": (time.time() - (time.monotonic() - t.end)) - max(ready) if ready else None,
            "output": [[round(s, 3), line] for s, line in res.out + res.err],
        }
        rec["down_rc"] = self.down(cfg, runtime)
        self.sweep()
        return rec

    def lower_bound(self, stack: Stack) -> dict[str, Any]:
        prefix = self.prefix("lb")
        spec = self.home / f"{prefix}stack.json"
        spec.write_text(json.dumps(stack.to_dict()))
        cmd = [sys.executable, str(HERE / "lower_bound.py"), str(spec), "--prefix", prefix, "--tag", self.tag]
        res = Running(cmd, {**self.env, "PYTHONPATH": str(HERE)}).result(600)
        rec = {"tool": "lower_bound", "rc": res.rc, "wall": res.wall, "cpu": res.cpu}
        rec["links"] = links(stack, prefix, started_at(self.api, self.tag))
        self.sweep(network=f"{prefix}net")
        return rec

    def sweep(self, network: str | None = None) -> None:
        label = {"label": f"{BENCH_LABEL}={self.tag}"}
        remove_containers(self.api, [c["Id"] for c in self.api.containers(all=True, filters=label)])
        if network:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_network(network)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sweep()
        state = self.home / ".local" / "state" / "pnr"
        if state_pids(str(state)):
            timed([str(VENV_BIN / "pnr"), "server", "stop"], self.env, 60)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="outside6", choices=list(PNR_UP_STACKS))
    parser.add_argument("--calls", type=int, default=6, help="pnr up calls (the first on the new HOME)")
    parser.add_argument("--burst", type=int, default=0, help="then N 3-chunk pnr ups at once vs one alone")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="PNR_NAME=VALUE",
        help="a pnr setting the new user has (e.g. PNR_EARLY_START=false); repeatable",
    )
    args = parser.parse_args(argv)
    bench = FreshHome(args)
    calls: list[dict[str, Any]] = []
    burst: dict[str, Any] | None = None
    try:
        for call in range(args.calls):
            rec = bench.pnr(PNR_UP_STACKS[args.stack]())
            if rec["rc"] != 0:
                raise SystemExit(
                    f"pnr up failed ({rec['rc']}):\n" + "\n".join(line for _s, line in rec["output"][-15:])
                )
            lb = bench.lower_bound(PNR_UP_STACKS[args.stack]())
            calls.append({"call": call + 1, "pnr": rec, "lower_bound": lb})
            steps = {k: round(median(v), 3) for k, v in rec["steps"].items()}
            first, last = (
                f"{rec[k]:.2f}s" if rec[k] is not None else "?" for k in ("to_first_start", "last_ready_to_exit")
            )
            print(
                f"call {call + 1}: pnr {rec['wall']:.2f}s (rc {rec['rc']}, first start {first}, "
                f"last ready→exit {last}), lower bound {lb['wall']:.2f}s, "
                f"ratio {rec['wall'] / lb['wall']:.3f}; link median pnr {median(rec['links']):.3f}s "
                f"lb {median(lb['links']):.3f}s; pnr steps {steps}",
                flush=True,
            )
        if args.burst:
            burst = bench.burst(args.burst)
            each, lb_each = median(burst["each"]), median(burst["lb_each"])
            print(
                f"{args.burst} at once: pnr each {each:.2f}s (slowest {max(burst['each']):.2f}s, rc {burst['rcs']}) vs "
                f"alone {burst['alone']:.2f}s = {each / burst['alone']:.2f}x; lower bound {lb_each:.2f}s vs "
                f"{burst['lb_alone']:.2f}s = {lb_each / burst['lb_alone']:.2f}x",
                flush=True,
            )
    finally:
        bench.close()
    warm = calls[1:]
    if warm:
        ratios = [c["pnr"]["wall"] / c["lower_bound"]["wall"] for c in warm]
        print(f"warm calls: pnr {median([c['pnr']['wall'] for c in warm]):.2f}s, lower bound "
              f"{median([c['lower_bound']['wall'] for c in warm]):.2f}s, ratio median {median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}]")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"tag": bench.tag, "stack": args.stack, "calls": calls, "burst": burst}, indent=1)
        )


if __name__ == "__main__":
    main()
