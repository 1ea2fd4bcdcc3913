"""Bring-ups through a Prefect work pool: N small domains at once vs one after another, through the same deployments.

    .venv/bin/python bench/pool.py [--domains 8] [--workers 2] [--limit 4] [--repeats 1] [--sqlite]

The team layout of docs/scale-out.md on one machine: pnr's managed Prefect server (PostgreSQL from
scripts/ensure_postgres.sh, or SQLite with --sqlite), a `process` work pool, `--workers` workers
(`prefect worker start --pool P --type process --limit L`), and a bring-up and a tear-down deployment per domain
(`prefect deploy --all --prefect-file` of a generated prefect.yaml). Each domain is a three-chunk busybox chain
(db -> api -> web, tcp then http probes, each container listening 0.5 s after it starts).

Per repeat: the N bring-ups one after another (each run created when the previous one ended), then all N at once;
after each phase the N tear-down deployments run at once (timed too). Per run it records, from the API: created ->
Pending (a worker took it), -> Running (its flow-run process started and loaded the flow), -> end.

Writes bench/results/pool-<stamp>.json and bench/results/pool.md. Everything it starts (server, workers, PostgreSQL if
it started it, containers by label) is stopped by pid / label at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pnr.backend import server  # noqa: E402

IMAGE = "pnr-test/busybox:1"
PREFECT = str(Path(sys.executable).with_name("prefect"))
PG_DIR = Path("/var/tmp/pnr-pg-bench")
RESULTS = ROOT / "bench" / "results"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def chain(domain: str) -> dict[str, Any]:
    chunks = []
    for i, (name, check) in enumerate((("db", "tcp"), ("api", "http"), ("web", "http"))):
        health: dict[str, Any] = {
            "type": check,
            "port_key": "8080",
            "timeout_seconds": 1,
            "interval_seconds": 0.1,
            "deadline_seconds": 120,
            "status_mapping": {
                "success": {"key": f"{name}_ready", "response": ["yes"], "tv": "Y"},
                "failure": {"key": f"{name}_ready", "response": ["no"], "tv": "N"},
            },
        }
        if check == "http":
            health.update(path="/health", expected_code=200)
        gate = "system_ready" if i == 0 else f"{chunks[-1]['name']}_ready"
        chunks.append(
            {
                "name": name,
                "gatekeeper": {gate: {"prompt": f"{gate}?", "response": ["yes"], "tv": "Y"}},
                "flowout": {f"{name}_ready": {"prompt": f"{name} ready?", "response": ["yes"], "tv": "Y"}},
                "health_check": health,
                "container": {
                    "name": f"{domain}-{name}",
                    "image": IMAGE,
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 0.5; httpd -f -p 8080 -h /www & wait"],
                    "ports": {"8080": f"127.0.0.1:{free_port()}"},
                },
            }
        )
    return {"name": domain, "cpuxs": {"up": {"design_chunks": chunks}}}


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.tag = uuid.uuid4().hex[:6]
        self.pool = f"pnr-bench-{self.tag}"
        self.runtime = root / "runtime"
        self.domains = [f"pb{self.tag}_{i}" for i in range(args.domains)]
        self.workers: list[subprocess.Popen[bytes]] = []
        self.deployments: dict[str, str] = {}
        self.api_url = ""
        self.env: dict[str, str] = {}
        self.started_pg = False

    # -- set-up

    def database_url(self) -> str | None:
        if self.args.sqlite:
            return None
        try:
            lines = (PG_DIR / "data" / "postmaster.pid").read_text().splitlines()
            os.kill(int(lines[0]), 0)
            port = int(lines[3])
        except (OSError, ValueError, IndexError):
            port, self.started_pg = free_port(), True
        env = {**os.environ, "PNR_PG_DIR": str(PG_DIR), "PNR_PG_PORT": str(port)}
        done = subprocess.run(
            [str(ROOT / "scripts" / "ensure_postgres.sh")], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"scripts/ensure_postgres.sh failed:\n{done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> dict[str, float]:
        t0 = time.monotonic()
        info, _ = server.ensure_running(
            database_url=self.database_url(), port=free_port(), state_dir=self.root / "server", timeout=180
        )
        setup = {"server_seconds": time.monotonic() - t0}
        self.api_url = info.api_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_API_URL": info.api_url,
            "PREFECT_HOME": str(self.root / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.args.query_seconds),
        }
        t1 = time.monotonic()
        self.cli("work-pool", "create", self.pool, "--type", "process")
        self.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(self.prefect_yaml()))
        setup["deploy_seconds"] = time.monotonic() - t1
        found = self.api("POST", "/deployments/filter", {"work_pools": {"name": {"any_": [self.pool]}}})
        flows = {f["id"]: f["name"] for f in self.api("POST", "/flows/filter", {})}
        self.deployments = {f"{flows[d['flow_id']]}/{d['name']}": d["id"] for d in found}
        t2 = time.monotonic()
        worker_cmd = [PREFECT, "worker", "start", "--pool", self.pool, "--type", "process"]
        for i in range(self.args.workers):
            log = (self.root / f"worker-{i}.log").open("wb")
            self.workers.append(
                subprocess.Popen(
                    [*worker_cmd, "--name", f"bench-{i}", "--limit", str(self.args.limit)],
                    cwd=self.root,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        while True:
            online = [
                w for w in self.api("POST", f"/work_pools/{self.pool}/workers/filter", {}) if w["status"] == "ONLINE"
            ]
            if len(online) == self.args.workers:
                break
            if any(w.poll() is not None for w in self.workers) or time.monotonic() - t2 > 120:
                raise SystemExit("the workers did not come online; see worker-*.log in " + str(self.root))
            time.sleep(0.5)
        setup["workers_online_seconds"] = time.monotonic() - t2
        return setup

    def prefect_yaml(self) -> Path:
        deployments = []
        pool = {"name": self.pool, "work_queue_name": "default", "job_variables": {"stream_output": False}}
        for domain in self.domains:
            config = self.root / f"{domain}.json"
            config.write_text(json.dumps(chain(domain), indent=1))
            common = {"name": domain, "work_pool": pool, "tags": ["pnr", f"domain:{domain}"]}
            deployments.append(
                {
                    **common,
                    "entrypoint": "flows/pnr_flows.py:bring_up",
                    "parameters": {
                        "config_path": str(config),
                        "runtime_dir": str(self.runtime),
                        "timeout_seconds": 300,
                    },
                }
            )
            deployments.append(
                {
                    **common,
                    "entrypoint": "flows/pnr_flows.py:tear_down",
                    "parameters": {"config_path": str(config), "runtime_dir": str(self.runtime)},
                }
            )
        spec = {
            "name": "pnr-pool-bench",
            "build": [{"prefect.deployments.steps.run_shell_script": {"id": "repo-dir", "script": "pwd"}}],
            "push": None,
            "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ repo-dir.stdout }}"}}],
            "deployments": deployments,
        }
        path = self.root / "prefect.yaml"
        path.write_text(json.dumps(spec, indent=1))
        return path

    # -- API, CLI

    def api(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=60)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def cli(self, *args: str) -> None:
        done = subprocess.run([PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"prefect {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    # -- runs

    def create(self, flow: str, domain: str) -> str:
        return str(self.api("POST", f"/deployments/{self.deployments[f'{flow}/{domain}']}/create_flow_run", {})["id"])

    def wait(self, ids: list[str], timeout: float = 600) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.api("POST", "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
            if len(runs) == len(ids) and all(r["state_type"] in TERMINAL for r in runs):
                return {r["id"]: r for r in runs}
            if time.monotonic() > deadline:
                raise SystemExit(f"runs not finished after {timeout}s: {[r['state_type'] for r in runs]}")
            time.sleep(0.2)

    def describe(self, run: dict[str, Any]) -> dict[str, Any]:
        history = self.api("GET", f"/flow_run_states/?flow_run_id={run['id']}")
        created = ts(run["created"])
        pending = min((ts(h["timestamp"]) for h in history if h["type"] == "PENDING"), default=created)
        return {
            "state": run["state_type"],
            "worker": (run.get("labels") or {}).get("prefect.worker.name"),
            "pickup": round(pending - created, 2),  # created -> a worker took it (Pending)
            "process_start": round(ts(run["start_time"]) - pending, 2) if run["start_time"] else None,
            "flow": round(run["total_run_time"], 2),  # Running -> end (the bring-up itself)
            "total": round(ts(run["end_time"]) - created, 2) if run["end_time"] else None,
            "start_time": run["start_time"],
            "end_time": run["end_time"],
        }

    def phase(self, flow: str, mode: str) -> dict[str, Any]:
        t0 = time.monotonic()
        runs: list[dict[str, Any]] = []
        if mode == "sequential":
            for domain in self.domains:
                run_id = self.create(flow, domain)
                runs.append(self.describe(self.wait([run_id])[run_id]) | {"domain": domain})
                if runs[-1]["state"] != "COMPLETED":
                    break
        else:
            ids = {self.create(flow, d): d for d in self.domains}
            done = self.wait(list(ids))
            runs = [self.describe(done[i]) | {"domain": d} for i, d in ids.items()]
        wall = time.monotonic() - t0
        failed = [r for r in runs if r["state"] != "COMPLETED"]
        if failed:
            raise SystemExit(f"{flow} {mode}: runs did not complete: {failed}")
        return {"flow": flow, "mode": mode, "wall": round(wall, 2), "runs": runs}

    # -- tear-down

    def close(self) -> None:
        for proc in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        server.stop(state_dir=self.root / "server")
        if self.started_pg:
            env = {**os.environ, "PNR_PG_DIR": str(PG_DIR)}
            subprocess.run([str(ROOT / "scripts" / "ensure_postgres.sh"), "stop"], env=env, capture_output=True)
        import docker

        client = docker.from_env()
        for domain in self.domains:
            for c in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}):
                c.remove(force=True)
            for n in client.networks.list(filters={"label": f"io.pnr.domain={domain}"}):
                n.remove()


def summary(phase: dict[str, Any]) -> dict[str, Any]:
    runs = phase["runs"]
    med = {k: round(statistics.median(r[k] for r in runs), 2) for k in ("pickup", "process_start", "flow", "total")}
    return {
        "wall": phase["wall"],
        "median": med,
        "max_total": max(r["total"] for r in runs),
        "workers": sorted({r["worker"] for r in runs}),
    }


def markdown(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        "# Bring-ups through a work pool: at once vs one after another",
        "",
        f"Measured {report['when']} on {report['machine']}; Prefect {report['prefect']}, {a['workers']} process "
        f"worker(s) with --limit {a['limit']}, worker poll every {a['query_seconds']} s, "
        f"{'SQLite' if a['sqlite'] else 'PostgreSQL'} behind pnr's managed server. "
        f"Load average at start / end: {report['load_start']} / {report['load_end']}. "
        f"`bench/pool.py` ({a['domains']} domains, each a 3-chunk busybox chain; raw: `{report['raw']}`).",
        "",
        "| repeat | phase | wall (all N) | per run: pickup | process start | bring-up | created → end (med; max) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, rep in enumerate(report["repeats"], 1):
        for phase in rep:
            s = summary(phase)
            m = s["median"]
            lines.append(
                f"| {i} | {phase['flow']} {phase['mode']} | {s['wall']:.1f} s | {m['pickup']:.1f} s | "
                f"{m['process_start']:.1f} s | {m['flow']:.1f} s | {m['total']:.1f} s; {s['max_total']:.1f} s |"
            )
    seq = [
        summary(ph) for rep in report["repeats"] for ph in rep if ph["flow"] == "pnr-up" and ph["mode"] == "sequential"
    ]
    par = [
        summary(ph) for rep in report["repeats"] for ph in rep if ph["flow"] == "pnr-up" and ph["mode"] == "parallel"
    ]

    def med(items: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
        return statistics.median(i["median"][sub] if sub else i[key] for i in items)

    n = a["domains"]
    lines += [
        "",
        f"**{n} at once vs one after another** (medians over repeats): all {n} up in {med(par, 'wall'):.1f} s vs "
        f"{med(seq, 'wall'):.1f} s, {med(seq, 'wall') / med(par, 'wall'):.1f}× faster. Each run, alone vs with "
        f"{n} at once: process start {med(seq, '', 'process_start'):.1f} s vs {med(par, '', 'process_start'):.1f} s, "
        f"the bring-up itself {med(seq, '', 'flow'):.1f} s vs {med(par, '', 'flow'):.1f} s, created → end "
        f"{med(seq, '', 'total'):.1f} s vs {med(par, '', 'total'):.1f} s. With {os.cpu_count()} cores the "
        "concurrent runs share the CPU: every flow-run process is a fresh Python that imports Prefect twice (the "
        "workspace supervisor, then the engine it execs) and pnr, and the flows share the cores with the Prefect "
        "server; more worker hosts add cores, the server and its database are what they share.",
    ]
    lines += [
        "",
        "- pickup: run created → a worker took it (Pending); process start: Pending → Running (the worker starts "
        "`python -m prefect.engine`, which imports Prefect and pnr, runs the pull step and loads the flow); bring-up "
        "flow: Running → end, the bring-up itself. Deployments with `job_variables: {stream_output: false}` (as "
        "docs/scale-out.md recommends).",
        f"- Set-up, once: server {report['setup']['server_seconds']:.1f} s, pool + `prefect deploy` "
        f"{report['setup']['deploy_seconds']:.1f} s, workers online {report['setup']['workers_online_seconds']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=4, help="each worker's --limit (concurrent flow runs)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--query-seconds", type=int, default=1, help="PREFECT_WORKER_QUERY_SECONDS (Prefect: 10)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL for the server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pnr-pool-bench-"))
    bench = Bench(args, root)
    load_start = os.getloadavg()
    try:
        setup = bench.start()
        repeats = []
        for i in range(args.repeats):
            rep = []
            for mode in ("sequential", "parallel"):
                up = bench.phase("pnr-up", mode)
                print(f"[{i + 1}] up {mode}: {json.dumps(summary(up))}", flush=True)
                down = bench.phase("pnr-down", "parallel")
                print(f"[{i + 1}] down (after {mode}) at once: {json.dumps(summary(down))}", flush=True)
                rep += [up, down | {"mode": f"parallel (after {mode})"}]
            repeats.append(rep)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    import prefect

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    raw = RESULTS / f"pool-{stamp}.json"
    report = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S +0000"),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "prefect": prefect.__version__,
        "args": vars(args),
        "load_start": [round(x, 1) for x in load_start],
        "load_end": [round(x, 1) for x in os.getloadavg()],
        "setup": {k: round(v, 2) for k, v in setup.items()},
        "repeats": repeats,
        "raw": str(raw.relative_to(ROOT)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(report, indent=1))
    (RESULTS / "pool.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
