"""pnr finds its engine as the `docker` CLI does: contexts made with the real `docker` CLI (in a temporary
DOCKER_CONFIG, never the user's) point `pnr` at a second real engine on this machine; DOCKER_HOST wins over a
context; a dead context is a clear error; `engines.NAME.context` works; `docker context use` between two runs
moves the next run, also through the resident runner. `pnr doctor` reports the same.

The second engine is this module's own (scripts/second_engine.sh with its own folder, bridge and address
tcp://127.0.0.7:2375), started for the module and purged after it, also on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port, http_chunk, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

HOST7 = "tcp://127.0.0.7:2375"
ENGINE7_ENV = {
    "PNR_ENGINE2_DIR": "/tmp/pnr-engine-ctx",
    "PNR_ENGINE2_BRIDGE": "pnrb7",
    "PNR_ENGINE2_BRIDGE_CIDR": "10.217.0.1/24",
    "PNR_ENGINE2_POOL": "10.218.0.0/16",
    "PNR_ENGINE2_TCP": "127.0.0.7:2375",
}


def _engine7(action: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "second_engine.sh"
    env = {**os.environ, **ENGINE7_ENV}
    return subprocess.run(["bash", str(script), action], capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def engine7(docker_client: Any) -> Iterator[Any]:
    """A docker-py client of this module's second engine (started here, purged at the end)."""
    import docker

    if os.environ.get("DOCKER_HOST"):
        pytest.skip("these tests need DOCKER_HOST unset (they set it themselves where they mean to)")
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    try:
        started = _engine7("start")
        if started.returncode != 0:
            pytest.skip(f"no second Docker engine: {(started.stderr or started.stdout).strip()}")
        client = docker.DockerClient(base_url=HOST7, timeout=30)
        yield client
        client.close()
    finally:
        _engine7("purge")


@pytest.fixture(scope="module")
def backend_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A docker CLI config of its own (contexts) and a pnr state dir of its own: the resident runner this module
    starts has the same DOCKER_CONFIG as its clients, so it serves them (and must follow `docker context use`)."""
    base = tmp_path_factory.mktemp("ctx")
    env = {"DOCKER_CONFIG": str(base / "docker"), "PNR_STATE_DIR": str(base / "state")}
    env["PNR_SERVER_PORT"] = str(free_port())
    try:
        yield env
    finally:
        from pnr.backend import runner, server

        runner.stop_runner(Path(env["PNR_STATE_DIR"]))
        server.stop(state_dir=Path(env["PNR_STATE_DIR"]))


def _docker(env: dict[str, str], *args: str) -> None:
    """The real docker CLI with the module's DOCKER_CONFIG."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def contexts(engine7: Any, backend_env: dict[str, str]) -> dict[str, str]:
    _docker(backend_env, "context", "create", "seven", "--docker", f"host={HOST7}")
    _docker(backend_env, "context", "create", "dead", "--docker", "host=tcp://127.0.0.1:1")
    return backend_env


@pytest.fixture
def domains(docker_client: Any, engine7: Any) -> Iterator[list[str]]:
    """Domains registered here are removed by label from both engines after the test."""
    names: list[str] = []
    yield names
    for client in (docker_client, engine7):
        for domain in names:
            label = f"io.pnr.domain={domain}"
            for c in client.containers.list(all=True, filters={"label": label}):
                c.remove(force=True)
            for n in client.networks.list(filters={"label": label}):
                n.remove()


def _config(tmp_path: Path, domain: str, engine: dict[str, Any] | None = None) -> Path:
    web = http_chunk("web", free_port(), prefix=domain + "-", check="http")
    data: dict[str, Any] = {"name": domain, "cpuxs": {"main": {"design_chunks": [web]}}}
    if engine is not None:
        web["engine"] = "far"
        data["engines"] = {"far": engine}
    return write_config(tmp_path / f"{domain}.json", data)


def _on(client: Any, domain: str) -> list[str]:
    return sorted(c.name for c in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}))


def _up(cfg: Path, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), "--timeout", "60", env=env)


def test_the_current_context_then_switching_it_moves_the_next_run(
    tmp_path, contexts, domain_name, docker_client, engine7, domains
):
    first, second = domain_name + "a", domain_name + "b"
    domains += [first, second]
    _docker(contexts, "context", "use", "seven")
    up = _up(_config(tmp_path, first), tmp_path, contexts)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _on(engine7, first) == [f"{first}-web"] and _on(docker_client, first) == []

    doctor = pnr_cli("doctor", "--json", env=contexts)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["engine"]["endpoint"] == HOST7 and report["engine"]["from"].startswith("current context seven (")
    assert report["backend"]["runner engine"] == "same as this shell's"  # the runner above served the run

    _docker(contexts, "context", "use", "default")  # the runner keeps running: the next run must move anyway
    up = _up(_config(tmp_path, second), tmp_path, contexts)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _on(docker_client, second) == [f"{second}-web"] and _on(engine7, second) == []

    down = pnr_cli("down", str(tmp_path / f"{second}.json"), "--runtime-dir", str(tmp_path / "rt"), env=contexts)
    assert down.returncode == 0, down.stderr
    assert _on(docker_client, second) == []


def test_docker_context_variable_and_docker_host_wins_over_a_context(
    tmp_path, contexts, domain_name, docker_client, engine7, domains
):
    first, second = domain_name + "a", domain_name + "b"
    domains += [first, second]
    _docker(contexts, "context", "use", "dead")  # DOCKER_CONTEXT wins over the current context
    up = _up(_config(tmp_path, first), tmp_path, {**contexts, "DOCKER_CONTEXT": "seven"})
    assert up.returncode == 0, up.stdout + up.stderr
    assert _on(engine7, first) == [f"{first}-web"] and _on(docker_client, first) == []

    both = {**contexts, "DOCKER_CONTEXT": "seven", "DOCKER_HOST": "unix:///var/run/docker.sock"}
    up = _up(_config(tmp_path, second), tmp_path, both)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _on(docker_client, second) == [f"{second}-web"] and _on(engine7, second) == []


def test_a_dead_current_context_is_a_clear_error_listing_the_places(tmp_path, contexts, domain_name, domains):
    domains.append(domain_name)
    _docker(contexts, "context", "use", "dead")
    up = _up(_config(tmp_path, domain_name), tmp_path, contexts)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    assert "cannot reach the Docker engine tcp://127.0.0.1:1 (from current context dead (" in up.stderr
    places = up.stderr[up.stderr.index("looked for the engine, in order:") :]
    assert places.index("DOCKER_HOST: not set") < places.index("DOCKER_CONTEXT: not set")
    assert places.index("DOCKER_CONTEXT: not set") < places.index("current context dead")
    assert "docker context use NAME" in places and "set DOCKER_HOST" in places

    doctor = pnr_cli("doctor", env=contexts)
    assert doctor.returncode == 1, doctor.stdout
    assert "engine: " in doctor.stdout and "tcp://127.0.0.1:1" in doctor.stdout and "to fix:" in doctor.stdout


def test_engines_context_names_the_engine_of_a_chunk(tmp_path, contexts, domain_name, docker_client, engine7, domains):
    domains.append(domain_name)
    _docker(contexts, "context", "use", "default")
    cfg = _config(tmp_path, domain_name, {"context": "seven"})
    up = _up(cfg, tmp_path, contexts)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _on(engine7, domain_name) == [f"{domain_name}-web"] and _on(docker_client, domain_name) == []
    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", str(tmp_path / "rt"), env=contexts)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["chunks"]["web"]["status"] == "completed"

    unknown = _up(_config(tmp_path, domain_name + "x", {"context": "nowhere"}), tmp_path, contexts)
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "engines.far.context: " in unknown.stderr and "no Docker context named 'nowhere'" in unknown.stderr
    assert str(Path(contexts["DOCKER_CONFIG"]) / "contexts") in unknown.stderr
    assert _on(docker_client, domain_name + "x") == [] and _on(engine7, domain_name + "x") == []
