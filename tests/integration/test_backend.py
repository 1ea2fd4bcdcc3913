"""Which Prefect backend `pnr up` uses, for real: the resident server and its runner (the default), an explicit
PREFECT_API_URL, and a throw-away server. Real processes, real Prefect server, real Docker."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import _TEST_ONLY_ENV, PNR, ROOT, free_port, http_chunk, pnr_cli, write_config

from pnr.backend import daemon, runner, runner_process, server

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

# how the runner pool starts its members and how `pnr up` reaches them: every combination runs the tests below
# that take `runner_mode` (a pool of another mode is replaced by the next `pnr up`)
MODES = [("fork", "unix"), ("fork", "tcp"), ("spawn", "unix"), ("spawn", "tcp")]


@pytest.fixture(params=MODES, ids=["-".join(m) for m in MODES])
def runner_mode(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    start, transport = request.param
    saved = {k: os.environ.get(k) for k in ("PNR_RUNNER_START", "PNR_RUNNER_TRANSPORT")}
    os.environ["PNR_RUNNER_START"], os.environ["PNR_RUNNER_TRANSPORT"] = start, transport
    try:
        yield start, transport
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _assert_mode(state_dir: Path, mode: tuple[str, str]) -> None:
    """Every member of the pool runs in `mode` and is reachable the way that mode says."""
    pool = runner.pool_status(state_dir)
    assert pool and all((p["start"], p["transport"]) == mode for p in pool), pool
    suffix = ".port" if mode[1] == "tcp" else ".sock"
    assert {p.suffix for p in state_dir.glob("runner*.*") if p.suffix in (".port", ".sock")} == {suffix}


def _config(tmp_path: Path, domain: str, gate_on_external: bool = False, slow: bool = False) -> Path:
    pre = domain + "-"
    api_gate = {"db_ready": "Y", "go": "Y"} if gate_on_external else {"db_ready": "Y"}
    delay = 2.0 if slow else 0.0  # each answers only `delay` s after it starts
    chunks = [
        http_chunk("db", free_port(), prefix=pre, delay=delay),
        http_chunk("api", free_port(), prefix=pre, gate=api_gate, check="http", delay=delay),
    ]
    return write_config(tmp_path / f"{domain}.json", {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}})


def _flow_run_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("flow run: "))
    return line.rsplit("/", 1)[1]


def _task_run_names(api_url: str, flow_run_id: str) -> set[str]:
    """Task runs of the flow run and its subflow runs, as the API has recorded them (the recorder writes them a
    moment after the run: wait for it)."""
    deadline = time.monotonic() + 30
    names: set[str] = set()
    with httpx.Client(base_url=api_url, timeout=10) as client:
        subflows = client.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}})
        ids = [flow_run_id, *(r["id"] for r in subflows.json())]
        while time.monotonic() < deadline:
            runs = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
            names = {r["name"] for r in runs}
            if {"db", "api"} <= names and any(n.startswith("db.probe[") for n in names):  # the sub-task too
                return names
            time.sleep(0.5)
    return names


def test_up_uses_the_resident_server_and_runner_and_links_the_flow_run(tmp_path, domain_name, cleanup, runner_mode):
    cleanup.append(domain_name)
    cfg = _config(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    first = pnr_cli("up", str(cfg), "--runtime-dir", rdir)
    assert first.returncode == 0, first.stdout + first.stderr
    info = server.status()
    assert info is not None and info.healthy
    pong = runner.runner_status(info.state_dir)
    assert pong is not None, "the runner should be running next to the server"
    assert f"flow run: {info.ui_url}/runs/flow-run/" in first.stdout
    names = _task_run_names(info.api_url, _flow_run_id(first.stdout))
    assert {"db", "api"} <= names and any(n.startswith("db.probe[") for n in names), names
    again = pnr_cli("up", str(cfg), "--runtime-dir", rdir)  # a second process reuses server and runner
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started pnr's Prefect server" not in again.stdout
    assert server.status().pid == info.pid and runner.runner_status(info.state_dir)["pid"] == pong["pid"]
    _assert_mode(info.state_dir, runner_mode)
    # pnr's server does not enforce CSRF protection (Prefect's default): the runner's runs ask for no token
    assert runner_process.server_wants_csrf(info.api_url) is False
    assert pnr_cli("down", str(cfg), "--runtime-dir", rdir).returncode == 0


def test_a_bad_config_sent_to_the_runner_is_exit_2_before_any_flow_run(tmp_path, domain_name, cleanup):
    """With server and runner up, `pnr up` sends the run before reading the config: the runner checks it
    (schema and ${VAR}s, in the client's environment) and answers exit 2, naming the file as typed, with no flow
    run created and nothing started; a good config's first line is the header from the runner."""
    cleanup.append(domain_name)
    info = server.ensure_running()[0]
    runner.ensure_runner(info.state_dir, info.api_url)
    data = json.loads(_config(tmp_path, domain_name).read_text())
    data["cpuxs"]["main"]["design_chunks"][1]["container"]["env"] = {"TOKEN": "${PNR_TEST_UNSET_TOKEN}"}
    write_config(tmp_path / "bad.json", data)

    def flow_runs() -> int:
        with httpx.Client(base_url=info.api_url, timeout=10) as client:
            return int(client.post("/flow_runs/count", json={}).json())

    before = flow_runs()
    bad = pnr_cli("up", "bad.json", "--runtime-dir", "rt", cwd=tmp_path)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    assert bad.stderr.startswith("bad.json: cpuxs.main.design_chunks[1].container.env.TOKEN:"), bad.stderr
    assert "PNR_TEST_UNSET_TOKEN" in bad.stderr and "pnr up" not in bad.stdout  # no header: nothing was accepted
    assert flow_runs() == before
    assert not subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.pnr.domain={domain_name}"], capture_output=True, text=True
    ).stdout.strip()
    good = pnr_cli("up", "bad.json", "--runtime-dir", "rt", cwd=tmp_path, env={"PNR_TEST_UNSET_TOKEN": "t0k"})
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"pnr up {domain_name} (2 chunks, cpux main); runtime rt"), good.stdout
    assert flow_runs() > before
    assert pnr_cli("down", "bad.json", "--runtime-dir", "rt", cwd=tmp_path).returncode == 0


# `bring_up`'s cancellation and crash hook, called as Prefect calls it for a crashed run of CONFIG RUNTIME RUN EARLY
CRASH_HOOK = """
import sys
from uuid import UUID, uuid4
from prefect.client.schemas.objects import FlowRun
from prefect.states import Crashed
from pnr.prefect.flows import _remove_what_this_run_started, bring_up
config, runtime, run_id, early = sys.argv[1:]
parameters = {"config_path": config, "runtime_dir": runtime, "early_start": early}
crashed = FlowRun(id=UUID(run_id), flow_id=uuid4(), name="crashed", parameters=parameters)
_remove_what_this_run_started(bring_up, crashed, Crashed())
"""


def test_a_call_that_starts_the_server_brings_the_domain_up_meanwhile_and_the_flow_run_takes_it_over(
    tmp_path, domain_name, cleanup, docker_client
):
    """A `pnr up` that has to start pnr's server (a state dir of its own) starts the first container at once, on
    pnr's own gates, before the flow run exists; the flow run then takes the containers over as its own: it names
    the early start in its parameters, reports them created (not reused) with their real start times, and a
    crashed or cancelled run removes them. With PNR_EARLY_START=false the call waits for the server first."""
    from pnr.backend.run import EARLY_NOTE

    cleanup.append(domain_name)
    state = tmp_path / "state"
    env = {"PNR_STATE_DIR": str(state), "PNR_SERVER_PORT": str(free_port())}
    cfg, rdir = _config(tmp_path, domain_name, slow=True), str(tmp_path / "rt")
    label = f"io.pnr.domain={domain_name}"
    try:
        first = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        assert EARLY_NOTE in out and "the flow run takes over" in out and "started pnr's Prefect server" in out, out
        assert "reused" not in out, out  # what the early start made is not reported as found
        assert out.index(EARLY_NOTE) < out.index(f"{domain_name}-db ready") < out.index("started pnr's Prefect"), out
        flow_run_id = _flow_run_id(out)
        api_url = server.status(state_dir=state).api_url
        with httpx.Client(base_url=api_url, timeout=10) as client:
            flow_run = client.get(f"/flow_runs/{flow_run_id}").json()
        early_id = flow_run["parameters"]["early_start"]
        assert early_id.startswith("early-"), flow_run["parameters"]
        containers = docker_client.containers.list(filters={"label": label})
        run_of = {c.name: c.labels["io.pnr.flow-run-id"] for c in containers}
        assert run_of[f"{domain_name}-db"] == early_id, run_of  # started long before the server answered
        assert set(run_of.values()) <= {early_id, flow_run_id}, run_of
        db_started = docker_client.api.inspect_container(f"{domain_name}-db")["State"]["StartedAt"]
        assert db_started[:23] < flow_run["created"][:23], (db_started, flow_run["created"])  # both UTC ISO
        chunks = json.loads((Path(rdir) / ".pnr" / f"{domain_name}.chunks.json").read_text())["chunks"]
        assert {c["action"] for c in chunks.values()} == {"created"}, chunks
        assert chunks["db"]["started_at"] < chunks["api"]["started_at"] < chunks["api"]["ready_at"]

        # a crashed or cancelled flow run removes what its early start made, as its own (the hook runs in a process
        # of its own: Prefect's events worker of this one must keep the session's server)
        env_hook = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
        hook = subprocess.run(
            [sys.executable, "-c", CRASH_HOOK, str(cfg), rdir, flow_run_id, early_id],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**env_hook, "PREFECT_API_URL": api_url},
        )
        assert hook.returncode == 0, hook.stdout + hook.stderr
        assert not docker_client.containers.list(all=True, filters={"label": label})

        # the next call finds server and runner up: no early start
        again = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=env)
        assert again.returncode == 0 and EARLY_NOTE not in again.stdout, again.stdout + again.stderr
        assert pnr_cli("server", "stop", env=env).returncode == 0
        waited = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env={**env, "PNR_EARLY_START": "false"})
        assert waited.returncode == 0 and EARLY_NOTE not in waited.stdout, waited.stdout + waited.stderr
        assert "started pnr's Prefect server" in waited.stdout
        assert pnr_cli("down", str(cfg), "--runtime-dir", rdir, env=env).returncode == 0
    finally:
        runner.stop_runner(state)
        server.stop(state_dir=state)


def test_prefect_api_url_wins_and_starts_no_server(tmp_path, domain_name, cleanup):
    """With PREFECT_API_URL set, `pnr up` runs against that server in its own process and starts nothing."""
    cleanup.append(domain_name)
    info = server.ensure_running()[0]  # the session's server stands in for "a server of the team's"
    fresh_state = tmp_path / "other-state"
    cfg = _config(tmp_path, domain_name)
    env = {"PREFECT_API_URL": info.api_url, "PNR_STATE_DIR": str(fresh_state)}
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "started pnr's Prefect server" not in up.stdout
    assert not (fresh_state / "server.pid").exists() and not (fresh_state / "runner.pid").exists()
    assert f"flow run: {info.ui_url}/runs/flow-run/" in up.stdout
    assert {"db", "api"} <= _task_run_names(info.api_url, _flow_run_id(up.stdout))


def test_the_runner_bounds_a_run_by_the_clients_settings(tmp_path, domain_name, cleanup):
    """PNR_TIMEOUT_SECONDS and PNR_GATE_SLICE_SECONDS in the `pnr up` client's environment govern the run the
    resident runner executes, although the runner's own environment has neither (it used to apply its own:
    300 s and a first gate slice of 60 s)."""
    cleanup.append(domain_name)
    info = server.ensure_running()[0]
    runner.ensure_runner(info.state_dir, info.api_url)
    cfg = _config(tmp_path, domain_name, gate_on_external=True)  # api waits on the external `go`, never set
    env = {"PNR_TIMEOUT_SECONDS": "8", "PNR_GATE_SLICE_SECONDS": "1"}
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=env, timeout=150)
    out = up.stdout + up.stderr
    assert up.returncode == 1, out
    assert "timed out after" in out and "external signal go never came" in out, out
    with httpx.Client(base_url=info.api_url, timeout=10) as client:
        flow_run_id = _flow_run_id(up.stdout)
        subflows = client.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}})
        ids = [flow_run_id, *(r["id"] for r in subflows.json())]
        runs = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
    api = next(r for r in runs if r["name"] == "api")
    assert api["run_count"] >= 2, api  # gate slices of 1, 2, 4 s: retried within the 8 s
    assert pnr_cli("down", str(cfg), "--runtime-dir", str(tmp_path / "rt")).returncode == 0


def test_ctrl_c_interrupts_the_run_in_the_runner(tmp_path, domain_name, cleanup, runner_mode):
    """The thin client forwards Ctrl-C: the run in the runner stops, is recorded Failed, exit status 130."""
    cleanup.append(domain_name)
    info = server.ensure_running()[0]  # a pool of this mode answers already: the run goes to it at once
    runner.ensure_runner(info.state_dir, info.api_url)
    cfg = _config(tmp_path, domain_name, gate_on_external=True)  # api waits for `go`, which never comes
    rdir = tmp_path / "rt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [*PNR, "up", str(cfg), "--runtime-dir", str(rdir), "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    lines: list[str] = []
    waiting = threading.Event()

    def read() -> None:  # db is ready (its line comes after api's "waits on ... go is U" announcement)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"\bdb\s+ready\b", line):
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(120), "".join(lines)
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    text = "".join(lines) + stderr
    info = server.status()
    assert info is not None
    runner_log = daemon.tail(info.state_dir / "runner.log", 40)  # what the runner said, should the run not end
    assert proc.returncode == 130, f"{text}\n--- the runner's log:\n{runner_log}"
    assert "interrupted." in stderr and f"pnr down {cfg}" in stderr
    assert "Traceback" not in text
    with httpx.Client(base_url=info.api_url, timeout=10) as client:
        state = client.get(f"/flow_runs/{_flow_run_id(''.join(lines))}").json()["state"]
    assert state["type"] == "FAILED", state
    chunks = json.loads(pnr_cli("status", str(cfg), "--runtime-dir", str(rdir), "--json").stdout)["chunks"]
    assert chunks["db"]["status"] == "completed" and chunks["api"]["container"] is None
    assert runner.runner_status(info.state_dir)["active"] == 0


def test_two_bring_ups_at_once_run_on_two_members_of_the_runner_pool(tmp_path, docker_client, cleanup, runner_mode):
    """The runner is a pool (PNR_RUNNERS=2 in this session): two runs at once go to different processes. A
    forking pool is its leader alone at rest and forks a worker for each run that finds no idle one."""
    info, _ = server.ensure_running()
    runner.stop_runner(info.state_dir)  # a new pool: no worker of an earlier test idles in it
    assert runner.ensure_runner(info.state_dir, info.api_url) is not None
    if runner_mode[0] == "spawn":
        deadline = time.monotonic() + 90  # a spawned member imports Prefect itself: it answers a moment later
        while len(pool := runner.pool_status(info.state_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pool) == 2 and len({p["pid"] for p in pool}) == 2, pool
    else:
        pool = runner.pool_status(info.state_dir)
        assert len(pool) == 1 and pool[0]["workers"] == [], pool
    _assert_mode(info.state_dir, runner_mode)
    domains = [f"c{os.getpid() % 1000}a{i}{time.monotonic_ns() % 10000}" for i in range(2)]
    cleanup.extend(domains)
    configs = [_config(tmp_path, d, slow=True) for d in domains]
    results: dict[int, Any] = {}

    def up(i: int) -> None:
        results[i] = pnr_cli("up", str(configs[i]), "--runtime-dir", str(tmp_path / f"rt{i}"))

    threads = [threading.Thread(target=up, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    busy_members = 0  # the most members seen busy at one moment
    while any(t.is_alive() for t in threads):
        busy_members = max(busy_members, sum(1 for p in runner.pool_status(info.state_dir) if p["active"]))
        time.sleep(0.1)
    for thread in threads:
        thread.join(240)
    assert busy_members == 2, "both runs went to one runner process"
    for i, domain in enumerate(domains):
        assert results[i].returncode == 0, results[i].stdout + results[i].stderr
        assert "2 chunks completed" in results[i].stdout
        own = {c.name for c in docker_client.containers.list(filters={"label": f"io.pnr.domain={domain}"})}
        assert own == {f"{domain}-db", f"{domain}-api"}


def test_a_forked_worker_ends_when_idle_and_the_next_run_forks_a_fresh_one(tmp_path, domain_name, cleanup, monkeypatch):
    """At rest a forking pool is its leader alone: the worker that ran a bring-up ends after
    PNR_RUNNER_IDLE_SECONDS without a connection (the memory its run dirtied goes with it), and the next
    `pnr up` gets a fresh worker forked from the leader, which stays the same process."""
    cleanup.append(domain_name)
    monkeypatch.setenv("PNR_RUNNER_START", "fork")
    monkeypatch.setenv("PNR_RUNNER_IDLE_SECONDS", "3")
    info, _ = server.ensure_running()
    runner.stop_runner(info.state_dir)
    log = runner.RunnerPaths(info.state_dir).log_file
    cfg, rdir = _config(tmp_path, domain_name), str(tmp_path / "rt")
    try:
        leader = runner.ensure_runner(info.state_dir, info.api_url)
        assert leader is not None and leader["workers"] == []
        offset = log.stat().st_size
        first = pnr_cli("up", str(cfg), "--runtime-dir", rdir)
        assert first.returncode == 0, first.stdout + first.stderr

        def ended() -> list[int]:
            pong = runner.runner_status(info.state_dir)
            text = log.read_text(errors="replace")[offset:]
            gone = [int(pid) for pid in re.findall(r"pnr runner (\d+) ends: idle for 3s", text)]
            return gone if pong is not None and pong["workers"] == [] else []

        deadline = time.monotonic() + 90
        while not (gone := ended()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gone, log.read_text(errors="replace")[offset:]
        assert not any(runner.processes.alive(pid) for pid in gone)
        again = pnr_cli("up", str(cfg), "--runtime-dir", rdir)
        assert again.returncode == 0, again.stdout + again.stderr
        text = log.read_text(errors="replace")[offset:]
        forked = [int(pid) for pid in re.findall(r"pnr runner (\d+) \(member \d+, fork", text)]
        assert len(set(forked)) >= 2 and not set(forked) & {leader["pid"]}, forked
        assert runner.runner_status(info.state_dir)["pid"] == leader["pid"]
    finally:
        pnr_cli("down", str(cfg), "--runtime-dir", rdir)
        runner.stop_runner(info.state_dir)  # the next test's pool has the session's settings


def test_throw_away_server_when_asked(tmp_path, domain_name, cleanup):
    cleanup.append(domain_name)
    cfg = _config(tmp_path, domain_name)
    fresh_state = tmp_path / "unused-state"
    env = {"PNR_STATE_DIR": str(fresh_state), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), "--ephemeral-server", env=env, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert not (fresh_state / "server.pid").exists()
    assert "flow run:" not in up.stdout  # a throw-away server has no UI to link to
    # logs and events reach the throw-away server before it stops (else Prefect prints this on stderr)
    assert "Error logging to API" not in up.stdout + up.stderr and "Traceback" not in up.stderr, up.stderr


def test_server_commands(tmp_path):
    """`pnr server status` of the session's server; start is idempotent; a taken port is a clear error."""
    server.ensure_running()
    status = pnr_cli("server", "status")
    assert status.returncode == 0 and "healthy" in status.stdout and "UI   http://" in status.stdout, status.stdout
    again = pnr_cli("server", "start")
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PNR_STATE_DIR": str(tmp_path / "state"), "PNR_SERVER_PORT": str(port)}
        clash = pnr_cli("server", "start", env=env)
    assert clash.returncode == 1 and str(port) in clash.stderr and "Traceback" not in clash.stderr, clash.stderr
    assert pnr_cli("server", "status", env={"PNR_STATE_DIR": str(tmp_path / "state")}).returncode == 1
    assert pnr_cli("server", "stop", env={"PNR_STATE_DIR": str(tmp_path / "state")}).returncode == 0
