"""pnr vs docker-compose 1.29.2 vs the lower bound, in one run on this machine.

    .venv/bin/python bench/run.py                      # everything (about 30 min on 2 cores)
    .venv/bin/python bench/run.py --stacks chain10 demo --repeats 3 --no-cli

Writes bench/results/<stamp>.json (raw, every run) and bench/results/latest.json, then renders
bench/results/inprocess.md (tables + bench/discussion.md) and bench/results/inprocess.png. Everything it creates
carries the label pnr.bench.run=<tag> (pnr's networks: io.pnr.domain=<bench domain>) and is removed after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import lower_bound  # noqa: E402
import report  # noqa: E402
from stacks import ALL, BENCH_LABEL, Stack, compose_file, free_port, pnr_config, remove_containers  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RUNNERS = ("lower_bound", "pnr", "compose")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def started_at(raw: str) -> float:
    head, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0")[:9])


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


class PeakSampler:
    """Samples a process tree's RSS every 0.1 s; `take()` returns the peak since the last take."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, tree_rss_kb(self.pid))

    def take(self) -> int:
        peak, self.peak = max(self.peak, tree_rss_kb(self.pid)), 0
        return peak

    def stop(self) -> None:
        self._stop.set()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = uuid.uuid4().hex[:6]
        self.client = docker.from_env(timeout=300)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pnrbench-{self.tag}-"))
        self.env = {
            **os.environ,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_HOME": str(self.tmp / "prefect"),
            "PREFECT_UI_ENABLED": "false",
        }
        self.env.pop("PREFECT_API_URL", None)
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[str] | None = None
        self.networks: set[str] = set()

    # -- processes ----------------------------------------------------------------------------------------
    def start_server(self) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        log(f"starting prefect server on {url}")
        with open(self.tmp / "server.log", "wb") as server_log:  # the child keeps its own copy of the fd
            self.server = subprocess.Popen(
                [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env={**self.env, "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"},
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import httpx

        for _ in range(240):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"prefect server did not start; see {self.tmp / 'server.log'}")
        self.env["PREFECT_API_URL"] = url
        self.server_sampler = PeakSampler(self.server.pid)

    def start_worker(self) -> None:
        with open(self.tmp / "worker.log", "w") as worker_log:  # the child keeps its own copy of the fd
            self.worker = subprocess.Popen(
                [sys.executable, str(HERE / "pnr_worker.py")],
                env={**self.env, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=worker_log,
                text=True,
            )
        hello = json.loads(self.worker.stdout.readline())  # type: ignore[union-attr]
        self.worker_pid = hello["pid"]

    def worker_call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.worker and self.worker.stdin and self.worker.stdout
        self.worker.stdin.write(json.dumps(cmd) + "\n")
        self.worker.stdin.flush()
        line = self.worker.stdout.readline()
        if not line:
            raise RuntimeError(f"pnr worker died; see {self.tmp / 'worker.log'}")
        return json.loads(line)

    def close(self) -> None:
        for proc in (self.worker, self.server):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.server:
            self.server_sampler.stop()

    # -- cleanup ------------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove every container and network this bench created (by label / recorded name)."""
        api = self.client.api
        ids = [c["Id"] for c in api.containers(all=True, filters={"label": f"{BENCH_LABEL}={self.tag}"})]
        remove_containers(api, ids)
        nets = {n["Id"]: n["Name"] for n in api.networks(filters={"label": f"{BENCH_LABEL}={self.tag}"})}
        for name in self.networks:
            for n in api.networks(names=[name]):
                if n["Name"] == name:
                    nets[n["Id"]] = name
        for nid, name in nets.items():
            try:
                api.remove_network(nid)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # dockerd 20.10 can keep stale endpoints after mass removal
                log(f"could not remove network {name}: {exc.explanation}")
        self.networks.clear()

    def started(self, stack: Stack, prefix: str) -> dict[str, float]:
        return {
            s.name: started_at(self.client.api.inspect_container(prefix + s.name)["State"]["StartedAt"])
            for s in stack.services
        }

    # -- runners ------------------------------------------------------------------------------------------
    def run_lower_bound(self, stack: Stack, prefix: str) -> dict[str, Any]:
        net = f"{prefix}net"
        self.networks.add(net)
        res = lower_bound.run(self.client, stack, prefix, net, self.tag)
        return {**res, "started": self.started(stack, prefix)}

    def run_pnr(self, stack: Stack, prefix: str) -> dict[str, Any]:
        domain = prefix.rstrip("-")
        cfg = self.tmp / f"{domain}.json"
        cfg.write_text(json.dumps(pnr_config(stack, domain, prefix, self.tag), indent=1))
        self.networks.add(f"pnr_{domain}")
        runtime = self.tmp / f"runtime-{domain}"
        self.server_sampler.take()
        spy = None
        if self.args.profile and not prefix.endswith("--1-"):
            out = HERE / "results" / f"profile-{stack.name}.txt"
            spy = subprocess.Popen(
                [
                    str(VENV_BIN / "py-spy"),
                    "record",
                    "-p",
                    str(self.worker_pid),
                    "-r",
                    "100",
                    "--gil",
                    "--format",
                    "raw",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # attached before the run starts
        ans = self.worker_call({"config": str(cfg), "runtime": str(runtime), "timeout": 1200})
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if not ans["ok"]:
            raise RuntimeError(f"pnr failed: {ans['error']}\n{ans.get('trace', '')}")
        chunks = ans["result"]["cpuxs"]["bench"]
        return {
            "wall": ans["wall"],
            "t0": ans["t0"],
            "cpu": ans["cpu"],
            "ready_at": {n: c["ready_at"] for n, c in chunks.items()},
            "started": self.started(stack, prefix),
            "pnr_rss_mb": ans["rss_kb"] / 1024,
            "pnr_peak_rss_mb": ans["hwm_kb"] / 1024,
            "server_peak_rss_mb": self.server_sampler.take() / 1024,
        }

    def run_compose(self, stack: Stack, prefix: str) -> dict[str, Any]:
        project = prefix.rstrip("-").replace("-", "")
        path = self.tmp / f"{project}.yml"
        path.write_text(json.dumps(compose_file(stack, prefix, self.tag, self.args.compose_interval), indent=1))
        self.networks.add(f"{project}_default")
        cmd = ["docker-compose", "-p", project, "-f", str(path), "--no-ansi", "up", "-d"]
        healthy: dict[str, float] = {}
        stream = self.client.events(
            since=int(time.time()) - 1,
            decode=True,
            filters={"label": f"{BENCH_LABEL}={self.tag}", "event": "health_status"},
        )

        def watch() -> None:  # live: the engine keeps only its last 256 events, and 1 ms checks flood them
            try:
                for ev in stream:
                    name = (ev.get("Actor", {}).get("Attributes") or {}).get("name", "")
                    if str(ev.get("status", "")).startswith("health_status: healthy"):
                        healthy.setdefault(name, ev["timeNano"] / 1e9)
            except Exception:  # closed at the end
                pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**self.env, "COMPOSE_HTTP_TIMEOUT": "600"})
        returned = time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"docker-compose up failed: {proc.stderr[-2000:]}")
        names = {s.name: prefix + s.name for s in stack.services}
        ready_at: dict[str, float] = {}
        if stack.kind == "probe":
            self._wait_healthy(names)
            time.sleep(0.3)
            stream.close()
            watcher.join(5)
            missing = [n for n in names.values() if n not in healthy]
            if missing:
                raise RuntimeError(f"compose: no healthy event seen for {missing}")
            ready_at = {svc: healthy[cname] for svc, cname in names.items()}
        else:
            stream.close()
        started = self.started(stack, prefix)
        if stack.kind != "probe":
            ready_at = dict(started)
        return {
            "wall": max(max(ready_at.values()), returned) - t0,
            "t0": t0,
            "ready_at": ready_at,
            "started": started,
            "compose_returned": returned - t0,
            "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        }

    def _wait_healthy(self, names: dict[str, str]) -> None:
        """Until every container (service -> container name) reports healthy; 300 s at most."""
        deadline = time.monotonic() + 300
        pending = dict(names)
        while pending and time.monotonic() < deadline:
            for svc, cname in list(pending.items()):
                if (self.client.api.inspect_container(cname)["State"].get("Health") or {}).get("Status") == "healthy":
                    pending.pop(svc)
            time.sleep(0.02)
        if pending:
            raise RuntimeError(f"compose: never healthy: {sorted(pending)}")

    def one(self, stack: Stack, runner: str, repeat: int) -> dict[str, Any]:
        prefix = f"pb{self.tag}-{runner[:2]}-{stack.name}-{repeat}-"
        try:
            res = getattr(self, f"run_{runner}")(stack, prefix)
            res.update(report.latencies(stack, res))
        except Exception as exc:  # recorded and reported; the other runs go on
            log(f"{stack.name:<11} {runner:<12} #{repeat}: FAILED: {str(exc)[:500]}")
            res = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}", "wall": float("nan")}
        finally:
            try:
                self.cleanup()
            except Exception as exc:  # e.g. an engine left stale endpoints on a network: report, keep going
                log(f"cleanup problem (left for the end): {exc}")
        res.update(stack=stack.name, runner=runner, repeat=repeat, chunks=len(stack.services))
        if "error" in res:
            return res
        log(
            f"{stack.name:<11} {runner:<12} #{repeat}: all ready in {res['wall']:.2f}s"
            f" (ready->start median {res['ready_to_start_median'] * 1000:.0f} ms)"
        )
        return res

    def cli_once(self, stack: Stack) -> dict[str, Any]:
        """`pnr up` end to end: a new process that starts its own temporary Prefect server."""
        prefix = f"pb{self.tag}-cli-{stack.name}-"
        domain = prefix.rstrip("-")
        cfg = self.tmp / f"{domain}.json"
        cfg.write_text(json.dumps(pnr_config(stack, domain, prefix, self.tag)))
        self.networks.add(f"pnr_{domain}")
        env = {**self.env, "PREFECT_HOME": str(self.tmp / "prefect-cli")}
        env.pop("PREFECT_API_URL", None)
        t0 = time.time()
        proc = subprocess.Popen(
            [str(VENV_BIN / "pnr"), "up", str(cfg), "--runtime-dir", str(self.tmp / "rt-cli")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - t0
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"pnr up failed:\n{out[-2000:]}")
        finally:
            self.cleanup()
        log(f"CLI end to end on {stack.name}: {wall:.2f}s")
        return {
            "stack": stack.name,
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "tail": out.strip().splitlines()[-1:],
        }


def save(data: dict[str, Any], name: str) -> None:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(data, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", nargs="+", default=list(ALL), choices=list(ALL))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale-repeats", type=int, default=2, help="repeats of the scale stacks (100 and 500 chunks)")
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    parser.add_argument("--compose-interval", default="1ms", help="compose healthcheck interval (engine minimum: 1ms)")
    parser.add_argument("--no-cli", action="store_true", help="skip the one `pnr up` end-to-end run")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the pnr process during its runs (bench/results/profile-*.txt)"
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not rewrite bench/results/inprocess.md and the plot"
    )
    args = parser.parse_args()

    bench = Bench(args)
    data: dict[str, Any] = {
        "tag": bench.tag,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": vars(args),
        "machine": report.machine(),
        "runs": [],
        "cli": None,
    }
    try:
        if "pnr" in args.runners:
            bench.start_server()
            bench.start_worker()
            warm = ALL["diamond"]()
            t0 = time.time()
            bench.one(warm, "pnr", -1)  # first flow run in a process pays imports and client set-up
            data["pnr_warmup_s"] = time.time() - t0
            data["server_idle_rss_mb"] = tree_rss_kb(bench.server.pid) / 1024  # type: ignore[union-attr]
        for name in args.stacks:
            repeats = args.scale_repeats if name.startswith("scale") else args.repeats
            for r in range(repeats):
                order = list(args.runners[r % len(args.runners) :]) + list(args.runners[: r % len(args.runners)])
                for runner in order:  # rotate the order so no runner always goes first
                    stack = ALL[name]()
                    data["runs"].append(bench.one(stack, runner, r))
                    save(data, "partial.json")
        if not args.no_cli and "pnr" in args.runners:
            data["cli"] = bench.cli_once(ALL["chain10"]())
    finally:
        bench.close()
        try:
            bench.cleanup()
        except Exception as exc:  # reported; the results below are still written
            log(f"cleanup problem: {exc}")
        shutil.rmtree(bench.tmp, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    save(data, f"{stamp}.json")
    save(data, "latest.json")
    (HERE / "results" / "partial.json").unlink(missing_ok=True)
    log(f"raw results: bench/results/{stamp}.json")
    if not args.no_report:
        report.render(data, ROOT)
        log("wrote bench/results/inprocess.md and bench/results/inprocess.png")


if __name__ == "__main__":
    main()
