"""A domain across two real Docker engines on this machine: the local one and a second dockerd
(scripts/second_engine.sh: tcp://127.0.0.2:2375, its published ports on 127.0.0.2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PNR, ROOT, free_port, http_chunk, pnr_cli, second_engine_ctl, write_config

from pnr.exceptions import EngineUnreachable
from pnr.prefect.flows import bring_up
from pnr.runtime.store import read_state

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture
def engine2(second_engine: str) -> Any:
    import docker

    if second_engine_ctl("status").returncode != 0:  # a test before this one stopped it
        assert second_engine_ctl("start").returncode == 0
    client = docker.DockerClient(base_url=second_engine, timeout=30)
    yield client
    client.close()


@pytest.fixture
def cleanup_both(docker_client: Any, second_engine: str) -> Iterator[list[str]]:
    """Domains registered here are removed by label from both engines after the test."""
    import docker

    domains: list[str] = []
    yield domains
    for client in (docker_client, second_engine):
        try:
            if isinstance(client, str):
                client = docker.DockerClient(base_url=client, timeout=30)
            for domain in domains:
                label = f"io.pnr.domain={domain}"
                for c in client.containers.list(all=True, filters={"label": label}):
                    c.remove(force=True)
                for n in client.networks.list(filters={"label": label}):
                    n.remove()
        except docker.errors.DockerException:
            pass  # an engine a test left stopped: the session fixture purges its data at the end


def _started_at(client: Any, name: str) -> float:
    raw = client.api.inspect_container(name)["State"]["StartedAt"]
    head, frac = raw.rstrip("Z").split(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + frac[:6])


def _trapping(delay: float) -> list[str]:
    """httpd after `delay` s, under a shell that exits on SIGTERM (a stop, or the engine shutting down, is quick)."""
    return ["sh", "-c", f"trap 'exit 0' TERM; sleep {delay}; httpd -f -p 8080 -h /www & wait"]


def _config(tmp_path: Path, domain: str, host: str, *, web_gate: dict[str, str] | None = None) -> Path:
    """db (second engine) -> api (local engine, reads db's address from ${chunk:...}) -> web (second engine)."""
    pre = domain + "-"
    db = http_chunk("db", free_port(), prefix=pre, check="http", command=_trapping(1))
    db["engine"] = "second"
    api = http_chunk("api", free_port(), prefix=pre, check="http", gate={"db_ready": "Y"}, command=_trapping(1))
    api["container"]["env"] = {
        "DB_HOST": "${chunk:db.host}",
        "DB_PORT": "${chunk:db.port:8080}",
        "DB_URL": "http://${chunk:db.host}:${chunk:db.port:8080}/index.html",
        "API_SELF": "${chunk:api.host}",
    }
    web = http_chunk("web", free_port(), prefix=pre, check="http", gate=web_gate or {"api_ready": "Y"})
    web["container"]["command"] = _trapping(0)
    web["engine"] = "second"
    data = {
        "name": domain,
        "engines": {"second": {"host": host}},
        "cpuxs": {"main": {"design_chunks": [db, api, web]}},
    }
    return write_config(tmp_path / f"{domain}.json", data)


def _ports(cfg: Path) -> dict[str, int]:
    data = json.loads(cfg.read_text())
    return {c["name"]: int(c["container"]["ports"]["8080"]) for c in data["cpuxs"]["main"]["design_chunks"]}


def _owned(client: Any, domain: str) -> list[str]:
    return sorted(c.name for c in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}))


def _networks(client: Any, domain: str) -> list[str]:
    return [n.name for n in client.networks.list(filters={"label": f"io.pnr.domain={domain}"})]


def test_the_two_engines_example_runs_and_its_api_reaches_db_on_the_other_engine_from_inside(
    tmp_path, runtime_dir, engine2, second_engine, prefect_harness, cleanup_both
):
    """config/two_engines.json as shipped (the engine's host is the fixture's): api's readiness is a wget from
    inside its container (first engine) to db's port on the second engine, at ${chunk:db.host}:${chunk:db.port}.
    With the loopback address 127.0.0.2 the example used to fail: inside a container that is the container."""
    data = json.loads((ROOT / "config" / "two_engines.json").read_text())
    data["engines"]["second"]["host"] = second_engine
    cleanup_both.append(data["name"])
    cfg = write_config(tmp_path / "two_engines.json", data)
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90)
    assert {n: c["phase"] for n, c in result["cpuxs"]["startup"].items()} == {"db": "ready", "api": "ready"}
    assert [c.name for c in engine2.containers.list(filters={"label": "io.pnr.domain=two_engines"})] == [
        "two_engines_db"
    ]


def test_a_domain_across_two_engines_comes_up_in_readiness_order_and_goes_down_from_both(
    tmp_path, runtime_dir, domain_name, docker_client, engine2, second_engine, prefect_harness, cleanup_both
):
    cleanup_both.append(domain_name)
    pre = domain_name + "-"
    cfg = _config(tmp_path, domain_name, second_engine)
    ports = _ports(cfg)
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90)
    assert {c["phase"] for c in result["cpuxs"]["main"].values()} == {"ready"}

    # each chunk on its engine, each engine with the domain's network
    assert _owned(engine2, domain_name) == [pre + "db", pre + "web"]
    assert _owned(docker_client, domain_name) == [pre + "api"]
    assert _networks(engine2, domain_name) == _networks(docker_client, domain_name) == [f"pnr_{domain_name}"]
    # readiness order across engines: each starts after its producer listened (>= 1 s after it started)
    t_db, t_web = (_started_at(engine2, pre + n) for n in ("db", "web"))
    t_api = _started_at(docker_client, pre + "api")
    assert t_api - t_db >= 1.0 and t_web - t_api >= 1.0, (t_db, t_api, t_web)

    # the second engine publishes on its own address, where the http probes dialled it
    bound = engine2.api.inspect_container(pre + "db")["HostConfig"]["PortBindings"]["8080/tcp"][0]
    assert (bound["HostIp"], int(bound["HostPort"])) == ("127.0.0.2", ports["db"])
    assert httpx.get(f"http://127.0.0.2:{ports['db']}/index.html", timeout=5).status_code == 200

    # ${chunk:...} resolved at start time, as the container sees its env
    code, raw = docker_client.containers.get(pre + "api").exec_run(["env"])
    env = dict(line.split("=", 1) for line in raw.decode().splitlines() if "=" in line)
    assert code == 0
    assert env["DB_HOST"] == "127.0.0.2" and env["DB_PORT"] == str(ports["db"])
    assert env["DB_URL"] == f"http://127.0.0.2:{ports['db']}/index.html"
    assert env["API_SELF"] == "127.0.0.1"

    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", str(runtime_dir))
    assert status.returncode == 0, status.stderr
    chunks = json.loads(status.stdout)["chunks"]
    assert {n: (c["engine"], c["status"]) for n, c in chunks.items()} == {
        "db": ("second", "completed"),
        "api": ("default", "completed"),
        "web": ("second", "completed"),
    }
    table = pnr_cli("status", str(cfg), "--runtime-dir", str(runtime_dir))
    assert "engine" in table.stdout and "second" in table.stdout, table.stdout

    down = pnr_cli("down", str(cfg), "--runtime-dir", str(runtime_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"pnr_{domain_name} (engine second)" in down.stdout
    assert _owned(engine2, domain_name) == _owned(docker_client, domain_name) == []
    assert _networks(engine2, domain_name) == _networks(docker_client, domain_name) == []


def test_an_engine_that_goes_away_mid_run_fails_it_quickly_and_status_and_down_say_so(
    tmp_path, runtime_dir, domain_name, docker_client, engine2, second_engine, prefect_harness, cleanup_both
):
    cleanup_both.append(domain_name)
    pre = domain_name + "-"
    # web waits on an external signal too: the run is still going when the second engine stops
    cfg = _config(tmp_path, domain_name, second_engine, web_gate={"api_ready": "Y", "go": "Y"})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=120)
        except Exception as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            state, _ = read_state(runtime_dir, domain_name)
            if "api_ready" in state and state["api_ready"].tv == "Y":
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"api never became ready: {outcome}")
        assert thread.is_alive(), outcome

        stopping = time.monotonic()
        assert second_engine_ctl("stop").returncode == 0
        stopped = time.monotonic()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        thread.join(60)
    error = outcome.get("error")
    assert isinstance(error, EngineUnreachable), outcome
    # seconds after the engine went away, not the run's 120 s deadline or a probe's 20 s
    assert outcome["at"] - stopped < 8, (stopping, stopped, outcome["at"])
    text = str(error)
    assert text.startswith("engine second (tcp://127.0.0.2:2375) stopped answering during the run of cpux main")
    assert "chunks on it: db (ready), web (waiting)" in text, text
    assert error.engine == "second"

    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", str(runtime_dir))
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["engine"] is False and data["engines"]["second"]["reachable"] is False
    assert data["engines"]["default"]["reachable"] is True
    assert data["chunks"]["db"]["status"] == "unknown" and "does not answer" in data["chunks"]["db"]["detail"]
    assert data["chunks"]["api"]["status"] == "completed"
    assert "cannot reach the Docker engine 'second'" in status.stderr
    assert "showing runtime files only for the chunks on engine second" in status.stderr

    down = pnr_cli("down", str(cfg), "--runtime-dir", str(runtime_dir))
    assert down.returncode == 1, down.stdout + down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert f"removed 1 container(s) ({pre}api)" in down.stderr and "could not reach" in down.stderr
    assert "engine second (tcp://127.0.0.2:2375)" in down.stderr and "run `pnr down` again" in down.stderr
    assert _owned(docker_client, domain_name) == [] and _networks(docker_client, domain_name) == []

    assert second_engine_ctl("start").returncode == 0  # it comes back: a later down finishes the job
    assert _owned(engine2, domain_name) == [pre + "db"]
    again = pnr_cli("down", str(cfg), "--runtime-dir", str(runtime_dir))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"removed container {pre}db" in again.stdout
    assert _owned(engine2, domain_name) == [] and _networks(engine2, domain_name) == []
    assert not list(runtime_dir.glob(f"{domain_name}*"))


def test_an_unreachable_engine_at_the_start_is_named_and_nothing_starts_anywhere(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    local = http_chunk("local", free_port(), prefix=pre)
    far = http_chunk("far", free_port(), prefix=pre, gate={"local_ready": "Y"})
    far["engine"] = "ghost"
    data = {
        "name": domain_name,
        "engines": {"ghost": {"host": "tcp://127.0.0.3:1"}},  # nothing listens there
        "cpuxs": {"first": {"design_chunks": [local]}, "second": {"design_chunks": [far]}},
    }
    cfg = write_config(tmp_path / "c.json", data)
    with pytest.raises(EngineUnreachable) as info:
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=30)
    assert info.value.engine == "ghost"
    assert "cannot reach the Docker engine 'ghost' (tcp://127.0.0.3:1" in str(info.value)
    # the engine of the second cpux was checked before the first cpux started anything
    assert _owned(docker_client, domain_name) == [] and _networks(docker_client, domain_name) == []


# -- an engine that hangs: accepts connections, never answers (dockerd under SIGSTOP) -----------------------
HANG_HOST = "tcp://127.0.0.8:2375"
HANG_ENV = {
    "PNR_ENGINE2_DIR": "/tmp/pnr-engine-hang",
    "PNR_ENGINE2_BRIDGE": "pnrb8",
    "PNR_ENGINE2_BRIDGE_CIDR": "10.219.0.1/24",
    "PNR_ENGINE2_POOL": "10.220.0.0/16",
    "PNR_ENGINE2_TCP": "127.0.0.8:2375",
}


def _hang_engine(action: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **HANG_ENV}
    script = ROOT / "scripts" / "second_engine.sh"
    return subprocess.run(["bash", str(script), action], capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture
def hanging_engine(docker_client: Any, tmp_path: Path) -> Iterator[tuple[Any, int, dict[str, str]]]:
    """An engine of this test's own (scripts/second_engine.sh on tcp://127.0.0.8:2375: freezing it disturbs no
    other test), its dockerd pid, and the environment of `pnr` commands that use it as DOCKER_HOST (with a state
    dir of their own, so the resident runner serves that engine). Everything is stopped and purged after."""
    import docker

    state = tmp_path / "state"
    env = {"DOCKER_HOST": HANG_HOST, "PNR_STATE_DIR": str(state), "PNR_SERVER_PORT": str(free_port())}
    try:
        started = _hang_engine("start")
        if started.returncode != 0:
            pytest.skip(f"no second Docker engine: {(started.stderr or started.stdout).strip()}")
        pid = int(Path(HANG_ENV["PNR_ENGINE2_DIR"], "docker.pid").read_text())
        client = docker.DockerClient(base_url=HANG_HOST, timeout=30)
        yield client, pid, env
        client.close()
    finally:
        from pnr.backend import runner, server

        runner.stop_runner(state)
        server.stop(state_dir=state)
        _hang_engine("purge")


def test_a_hanging_engine_ends_up_status_and_down_within_seconds(tmp_path, domain_name, hanging_engine):
    """SIGSTOP on the engine's dockerd while a chunk's exec probe keeps calling it: `pnr up` fails with the
    engine-unreachable message soon after (the supervisor's 10 s ping, docker calls bounded at 10 s), not after
    docker-py's minute; `status` and `down` are bounded the same way."""
    client, pid, env = hanging_engine
    pre = domain_name + "-"
    db = http_chunk("db", free_port(), prefix=pre, check="http")
    web = http_chunk("web", free_port(), prefix=pre, check="http", gate={"db_ready": "Y"}, deadline=120)
    web["health_check"] = {  # docker exec calls every 0.1 s: one is in flight when the engine freezes
        **{k: web["health_check"][k] for k in ("status_mapping", "interval_seconds")},
        "type": "exec",
        "command": ["test", "-f", "/never"],
        "deadline_seconds": 120,
        "timeout_seconds": 5,
    }
    cfg = write_config(tmp_path / "c.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": [db, web]}}})
    rdir = tmp_path / "rt"
    full_env = {**os.environ, **env}
    # server and runner up first: the engine freezes during the flow run (pnr.lifecycle.early's own case is a
    # unit test: tests/unit/test_early_start.py)
    assert pnr_cli("server", "start", env=env).returncode == 0
    command = [*PNR, "up", str(cfg), "--runtime-dir", str(rdir), "--timeout", "150"]
    up = subprocess.Popen(command, env=full_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen_for: dict[str, float] = {}
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and up.poll() is None:
            if [c.name for c in client.containers.list(filters={"name": pre + "web"})]:
                break
            time.sleep(0.2)
        assert up.poll() is None, up.communicate()
        time.sleep(1)  # web's exec probe is polling
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        _, stderr = up.communicate(timeout=120)
        frozen_for["up"] = time.monotonic() - frozen
        for what in ("status", "down"):
            start = time.monotonic()
            done = pnr_cli(what, str(cfg), "--runtime-dir", str(rdir), env=env, timeout=120)
            frozen_for[what] = time.monotonic() - start
            frozen_for[what + "_exit"] = done.returncode
            frozen_for[what + "_err"] = done.stderr  # type: ignore[assignment]
    finally:
        os.kill(pid, signal.SIGCONT)
        if up.poll() is None:
            up.kill()
            up.wait(10)
    print(
        f"measured: up ended {frozen_for['up']:.1f}s after the freeze; status {frozen_for['status']:.1f}s, "
        f"down {frozen_for['down']:.1f}s"
    )
    assert up.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"the default engine ({HANG_HOST}) stopped answering during the run of cpux main" in stderr
    assert frozen_for["up"] < 30, frozen_for  # measured here: ~13 s (was ~70 s: docker-py's 60 s timeout)
    assert frozen_for["status"] < 30 and "did not answer within 10s" in str(frozen_for["status_err"])
    assert frozen_for["down_exit"] == 1 and frozen_for["down"] < 30
    assert f"the default engine ({HANG_HOST}) did not answer within 10s" in str(frozen_for["down_err"])

    again = pnr_cli("down", str(cfg), "--runtime-dir", str(rdir), env=env)  # it answers again: all goes
    assert again.returncode == 0, again.stderr
    assert client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"}) == []
