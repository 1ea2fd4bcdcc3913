"""pnr as Prefect deployments, end to end: a real `prefect server start` (temporary PREFECT_HOME, free port),
the process work pool, `prefect deploy --all` from the repo's prefect.yaml, `prefect deployment run`, and a
real worker (`prefect worker start --run-once`) executing the runs; then the API is asked what happened.

The example_chain deployments are run with their `config_path` overridden by a copy of
config/example_chain.json with a unique domain, container names and free host ports, so concurrent runs on
the same machine never collide."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.prefect]

PREFECT = [str(Path(sys.executable).with_name("prefect"))]
if not Path(PREFECT[0]).exists():
    PREFECT = [sys.executable, "-m", "prefect"]
UUID_RE = re.compile(r"UUID: ([0-9a-f-]{36})")


class PrefectServer:
    """`prefect server start` in its own process group, with a private PREFECT_HOME (its own SQLite DB)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_CLI_COLORS": "false",
            "PREFECT_CLI_WRAP_LINES": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        self.log = home / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def start(self, timeout: float = 180) -> None:
        t0 = time.monotonic()
        server_env = {k: v for k, v in self.env.items() if k != "PREFECT_API_URL"}
        server_env["PREFECT_UI_API_URL"] = self.api_url  # the UI's browser code calls this, not :4200
        self.proc = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=server_env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    self.startup_seconds = time.monotonic() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"prefect server did not answer /api/health within {timeout}s:\n{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the prefect CLI against this server, from the repo root (where prefect.yaml is)."""
        proc = subprocess.run(
            [*PREFECT, *args], check=False, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"prefect {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def api(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[PrefectServer]:
    home = Path(tempfile.mkdtemp(prefix="pnr-prefect-home-"))
    server = PrefectServer(home)
    server.start()
    try:
        server.cli("work-pool", "create", "pnr", "--type", "process")
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer) -> dict[str, float]:
    """`prefect deploy --all` from the repo: the very prefect.yaml users run."""
    t0 = time.monotonic()
    prefect_server.cli("--no-prompt", "deploy", "--all")
    return {"deploy_seconds": time.monotonic() - t0, "server_startup_seconds": prefect_server.startup_seconds}


def chain_copy(tmp_path: Path, domain: str) -> Path:
    """config/example_chain.json with a unique domain, container names and free host ports."""
    data = json.loads((ROOT / "config" / "example_chain.json").read_text())
    data["name"] = domain
    for chunks in data["cpuxs"].values():
        for chunk in chunks["design_chunks"]:
            chunk["container"]["name"] = f"{domain}-{chunk['name']}"
            chunk["container"]["ports"] = {k: f"127.0.0.1:{free_port()}" for k in chunk["container"]["ports"]}
    path = tmp_path / f"{domain}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def run_deployment(server: PrefectServer, name: str, **params: str) -> str:
    args = ["deployment", "run", name]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    out = server.cli(*args).stdout
    match = UUID_RE.search(out)
    assert match, out
    return match.group(1)


def worker_run_once(server: PrefectServer, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return server.cli("worker", "start", "--pool", "pnr", "--run-once", timeout=timeout)


def flow_run_state(server: PrefectServer, flow_run_id: str) -> str:
    return str(server.api("GET", f"/flow_runs/{flow_run_id}")["state"]["type"])


def children(server: PrefectServer, flow_run_id: str) -> list[dict[str, Any]]:
    return list(
        server.api(
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"parent_flow_run_id": {"operator": "and_", "any_": [flow_run_id]}}},
        )
    )


def task_runs(server: PrefectServer, flow_run_id: str) -> list[dict[str, Any]]:
    return list(server.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}))


def pnr_events(server: PrefectServer, domain: str, want: set[str], timeout: float = 30) -> list[dict[str, Any]]:
    """pnr's events about `domain` as the server stored them (they arrive asynchronously: poll until `want` is seen)."""
    deadline = time.monotonic() + timeout
    while True:
        body = {
            "filter": {"event": {"prefix": ["pnr."]}, "any_resource": {"labels": {"pnr.domain": [domain]}}},
            "limit": 50,
        }
        events = list(server.api("POST", "/events/filter", body)["events"])
        if want <= {e["event"] for e in events} or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def latest_artifact(server: PrefectServer, key: str) -> dict[str, Any]:
    found = server.api("POST", "/artifacts/latest/filter", {"artifacts": {"key": {"any_": [key]}}})
    assert found, f"no artifact {key}"
    return dict(found[0])


def owned(docker_client: Any, domain: str) -> tuple[list[Any], list[Any]]:
    label = f"io.pnr.domain={domain}"
    return (
        docker_client.containers.list(all=True, filters={"label": label}),
        docker_client.networks.list(filters={"label": label}),
    )


def test_prefect_yaml_deploys_every_example_with_inactive_schedules(prefect_server, deployed):
    with prefect_server.client() as client:
        deployments = {f"{d.name}:{d.entrypoint.split(':')[1]}": d for d in client.read_deployments()}
    expected = {f"{n}:{f}" for n in ("example-chain", "dev-stack", "seed-example") for f in ("pnr_up", "pnr_down")}
    assert expected <= set(deployments), sorted(deployments)
    for key, dep in deployments.items():
        assert dep.work_pool_name == "pnr"
        assert dep.schedules, key
        assert all(not s.active for s in dep.schedules), f"{key}: a schedule ships active"
        assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        assert any(t.startswith("domain:") for t in dep.tags)
    up = deployments["example-chain:pnr_up"]
    assert up.parameters == {  # no timeout_seconds: the worker's PNR_TIMEOUT_SECONDS decides
        "config_path": "config/example_chain.json",
        "cpux": None,
        "runtime_dir": None,
        "watch": False,
    }
    assert "cpux:chain_startup" in up.tags
    crons = {k: s.schedule.cron for k, d in deployments.items() for s in d.schedules}  # type: ignore[union-attr]
    assert crons["example-chain:pnr_up"] == "0 7 * * 1-5"
    assert crons["example-chain:pnr_down"] == "0 20 * * 1-5"


def test_prefect_deploy_name_flow_slash_deployment_deploys_that_one(prefect_server, deployed):
    out = prefect_server.cli("--no-prompt", "deploy", "--name", "pnr-up/example-chain").stdout
    assert "Deployment 'pnr-up/example-chain'" in out and "successfully created" in out, out[-3000:]
    assert "pnr-down/" not in out and "dev-stack" not in out, out[-3000:]


def test_bring_up_and_tear_down_deployments_run_by_a_worker(
    prefect_server, deployed, docker_client, tmp_path, cleanup, record_property
):
    domain = f"t{uuid.uuid4().hex[:10]}"
    cleanup.append(domain)
    config = chain_copy(tmp_path, domain)
    runtime = tmp_path / "runtime"
    chunks = ["db", "api", "web"]

    t0 = time.monotonic()
    up_id = run_deployment(prefect_server, "pnr-up/example-chain", config_path=str(config), runtime_dir=str(runtime))
    worker = worker_run_once(prefect_server)
    up_seconds = time.monotonic() - t0
    assert flow_run_state(prefect_server, up_id) == "COMPLETED", worker.stdout[-4000:] + worker.stderr[-4000:]
    up_run = prefect_server.api("GET", f"/flow_runs/{up_id}")
    assert up_run["name"] == f"{domain} · deployment"  # the UI's runs list: pnr-up > <domain> · deployment
    assert {"pnr", f"domain:{domain}", "deployment", "bring-up"} <= set(up_run["tags"])
    assert "domain:example_chain" not in up_run["tags"]  # the deployment's tag, for another config

    # one subflow run per cpux, one task run per chunk (named after it), a probe task run nested in each
    subs = children(prefect_server, up_id)
    assert [s["name"] for s in subs] == [f"{domain}.chain_startup"]
    assert subs[0]["state_type"] == "COMPLETED"
    runs = task_runs(prefect_server, subs[0]["id"])
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_name.setdefault(run["name"], []).append(run)
    for chunk in chunks:
        assert len(by_name.get(chunk, [])) == 1, sorted(by_name)
        assert by_name[chunk][0]["state_type"] == "COMPLETED"
    probes = {n: r[0] for n, r in by_name.items() if ".probe[" in n}
    assert set(probes) == {"db.probe[tcp]", "api.probe[http]", "web.probe[http]"}
    for name, probe in probes.items():
        parent = by_name[name.split(".")[0]][0]["id"]
        assert [p["id"] for p in probe["task_inputs"]["__parents__"]] == [parent], name
        assert probe["state_type"] == "COMPLETED"
    # api depends on db and web on api: recorded as task inputs, drawn as edges in the UI
    edges = {
        i["id"]
        for inputs in by_name["api"][0]["task_inputs"].values()
        for i in inputs
        if i.get("input_type") == "task_run"
    }
    assert by_name["db"][0]["id"] in edges and by_name["web"][0]["id"] not in edges

    containers, networks = owned(docker_client, domain)
    assert sorted(c.name for c in containers) == sorted(f"{domain}-{c}" for c in chunks)
    assert all(c.status == "running" for c in containers)
    assert all(c.labels.get("io.pnr.flow-run-id") for c in containers)
    assert len(networks) == 1
    state = json.loads((runtime / f"{domain}.pnr.json").read_text())
    assert {k: v["tv"] for k, v in state.items()} == {
        "system_ready": "Y",
        "db_ready": "Y",
        "api_ready": "Y",
        "web_ready": "Y",
    }

    # artifacts under stable keys, attached to the bring-up's flow run; events for automations
    from pnr.prefect.artifacts import artifact_key

    for what in ("plan", "signals", "timeline", "progress"):
        art = latest_artifact(prefect_server, artifact_key(domain, what))
        assert art["flow_run_id"] == up_id, what
    assert float(latest_artifact(prefect_server, artifact_key(domain, "progress"))["data"]) == 100.0
    assert "Critical path: db → api → web" in latest_artifact(prefect_server, artifact_key(domain, "timeline"))["data"]
    events = pnr_events(prefect_server, domain, {"pnr.domain.up.completed"})
    ready = [e["resource"]["prefect.resource.id"] for e in events if e["event"] == "pnr.chunk.ready"]
    assert sorted(ready) == sorted(f"pnr.chunk.{domain}.{c}" for c in chunks)
    assert {e["event"] for e in events} >= {"pnr.domain.up.started", "pnr.signal.changed", "pnr.domain.up.completed"}
    completed = next(e for e in events if e["event"] == "pnr.domain.up.completed")
    assert completed["resource"]["prefect.resource.id"] == f"pnr.domain.{domain}"
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in completed["related"]}
    assert roles["flow-run"] == f"prefect.flow-run.{up_id}" and roles["deployment"].startswith("prefect.deployment.")
    web_ready = next(e for e in events if e["event"] == "pnr.chunk.ready" and e["resource"]["pnr.chunk"] == "web")
    assert {r["prefect.resource.role"]: r["prefect.resource.id"] for r in web_ready["related"]}[
        "domain"
    ] == f"pnr.domain.{domain}"

    t1 = time.monotonic()
    down_id = run_deployment(
        prefect_server, "pnr-down/example-chain", config_path=str(config), runtime_dir=str(runtime)
    )
    worker = worker_run_once(prefect_server)
    down_seconds = time.monotonic() - t1
    assert flow_run_state(prefect_server, down_id) == "COMPLETED", worker.stdout[-4000:]
    assert owned(docker_client, domain) == ([], [])
    assert not (runtime / f"{domain}.pnr.json").exists()

    timings = {
        **deployed,
        "up_via_worker_seconds": round(up_seconds, 1),
        "down_via_worker_seconds": round(down_seconds, 1),
    }
    for key, value in timings.items():
        record_property(key, round(value, 1))
    print(f"\ndeployment timings: {timings}")


def test_cancelling_a_deployment_run_leaves_no_half_state(prefect_server, deployed, docker_client, tmp_path, cleanup):
    domain = f"t{uuid.uuid4().hex[:10]}"
    cleanup.append(domain)
    config = chain_copy(tmp_path, domain)
    data = json.loads(config.read_text())
    web = data["cpuxs"]["chain_startup"]["design_chunks"][2]
    web["gatekeeper"]["release"] = {"prompt": "may the web front start?", "response": ["yes"], "tv": "Y"}  # never set
    config.write_text(json.dumps(data))
    runtime = tmp_path / "runtime"

    run_id = run_deployment(prefect_server, "pnr-up/example-chain", config_path=str(config), runtime_dir=str(runtime))
    worker = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "pnr", "--run-once"],
        cwd=ROOT,
        env=prefect_server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:  # half way: db and api up, web waiting on `release`
            running = [c.name for c in owned(docker_client, domain)[0] if c.status == "running"]
            if len(running) == 2 and flow_run_state(prefect_server, run_id) == "RUNNING":
                break
            assert time.monotonic() < deadline and worker.poll() is None, (running, worker.poll())
            time.sleep(0.5)
        t0 = time.monotonic()
        prefect_server.cli("flow-run", "cancel", run_id)
        output, _ = worker.communicate(timeout=180)
        cancel_seconds = time.monotonic() - t0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)

    assert flow_run_state(prefect_server, run_id) == "CANCELLED", output[-4000:]
    assert owned(docker_client, domain) == ([], []), output[-4000:]
    assert not (runtime / f"{domain}.pnr.json").exists()
    events = pnr_events(prefect_server, domain, {"pnr.domain.up.cancelled"})
    cancelled = [e for e in events if e["event"] == "pnr.domain.up.cancelled"]
    assert cancelled and sorted(cancelled[0]["payload"]["removed"]) == sorted(f"{domain}-{c}" for c in ("db", "api"))
    print(f"\ncancel -> worker done, nothing left: {cancel_seconds:.1f}s")


def test_pnr_serve_serves_bring_up_and_tear_down(prefect_server, docker_client, tmp_path, cleanup):
    domain = f"t{uuid.uuid4().hex[:10]}"
    cleanup.append(domain)
    config = chain_copy(tmp_path, domain)
    runtime = tmp_path / "runtime"
    env = {**prefect_server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serving = subprocess.Popen(
        [sys.executable, "-m", "pnr.cli", "serve", str(config), "--runtime-dir", str(runtime)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def wait_state(run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while (state := flow_run_state(prefect_server, run_id)) not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert time.monotonic() < deadline and serving.poll() is None, state
            time.sleep(0.5)
        return state

    try:
        deadline = time.monotonic() + 120
        while True:
            found = prefect_server.api("POST", "/deployments/filter", {"deployments": {"name": {"any_": [domain]}}})
            if len(found) == 2:
                break
            assert time.monotonic() < deadline and serving.poll() is None, serving.poll()
            time.sleep(0.5)
        assert all(s["active"] is False for d in found for s in d["schedules"]) and all(d["schedules"] for d in found)
        up = next(d for d in found if d["entrypoint"].endswith(":bring_up"))
        assert up["parameters"]["config_path"] == str(config) and up["parameters"]["runtime_dir"] == str(runtime)

        up_id = run_deployment(prefect_server, f"pnr-up/{domain}")
        assert wait_state(up_id) == "COMPLETED"
        assert len([c for c in owned(docker_client, domain)[0] if c.status == "running"]) == 3
        down_id = run_deployment(prefect_server, f"pnr-down/{domain}")
        assert wait_state(down_id) == "COMPLETED"
        assert owned(docker_client, domain) == ([], [])
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGINT)
            try:
                serving.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(serving.pid, signal.SIGKILL)
                serving.wait(10)


def documented_automation() -> str:
    """The automation YAML exactly as docs/prefect.md shows it (the docs cannot drift from what is tested)."""
    text = (ROOT / "docs" / "prefect.md").read_text()
    after = text.split("<!-- automation:teardown-on-failure", 1)[1]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_documented_automation_tears_down_a_stack_that_failed(
    prefect_server, deployed, docker_client, tmp_path, cleanup
):
    domain = f"t{uuid.uuid4().hex[:10]}"
    cleanup.append(domain)
    config = chain_copy(tmp_path, domain)
    data = json.loads(config.read_text())
    data["cpuxs"]["chain_startup"]["design_chunks"][1]["container"]["command"] = ["sh", "-c", "echo api-broke; exit 3"]
    config.write_text(json.dumps(data))
    runtime = tmp_path / "runtime"

    down = prefect_server.api("GET", "/deployments/name/pnr-down/example-chain")
    automation = tmp_path / "automation.yaml"
    automation.write_text(documented_automation().replace("PNR_DOWN_DEPLOYMENT_ID", down["id"]))
    prefect_server.cli("automation", "create", "--from-file", str(automation))
    try:
        up_id = run_deployment(
            prefect_server, "pnr-up/example-chain", config_path=str(config), runtime_dir=str(runtime)
        )
        worker_run_once(prefect_server)
        assert flow_run_state(prefect_server, up_id) == "FAILED"
        assert [
            c.name for c in owned(docker_client, domain)[0]
        ] != []  # a failed bring-up leaves its remains to look at

        deadline = time.monotonic() + 60
        while True:  # the automation reacts to pnr.domain.up.failed by scheduling the tear-down with our parameters
            runs = prefect_server.api("POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [down["id"]]}}})
            ours = [r for r in runs if r["parameters"].get("config_path") == str(config)]
            if ours:
                break
            assert time.monotonic() < deadline, "the automation did not schedule a tear-down"
            time.sleep(1)
        assert ours[0]["parameters"]["runtime_dir"] == str(runtime)
        worker_run_once(prefect_server)
        assert flow_run_state(prefect_server, ours[0]["id"]) == "COMPLETED"
        assert owned(docker_client, domain) == ([], [])
    finally:
        for auto in prefect_server.api("POST", "/automations/filter", {}):
            prefect_server.api("DELETE", f"/automations/{auto['id']}")
