"""pnr through Podman's Docker-compatible API (rootful `podman system service`, scripts/ensure_podman.sh): the
`pnr` command with DOCKER_HOST on Podman's socket, checked with a client of Podman's own API."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_IMAGE, free_port, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

HEALTH_IMAGE = "pnr-test/busybox-health:1"  # scripts/build_test_images.sh; loaded by scripts/ensure_podman.sh
FAST = {"interval_seconds": 0.2, "timeout_seconds": 2, "deadline_seconds": 30}


@pytest.fixture(scope="module")
def podman(podman_host: str) -> Any:
    """A docker-py client of Podman's API (not the Docker engine)."""
    import docker

    client = docker.DockerClient(base_url=podman_host, timeout=30)
    components = [c.get("Name") for c in client.version().get("Components") or []]
    assert "Podman Engine" in components, components  # the socket really is Podman's
    return client


@pytest.fixture
def podman_env(podman_host: str, tmp_path: Path) -> dict[str, str]:
    return {"DOCKER_HOST": podman_host, "PREFECT_HOME": str(tmp_path / "prefect-home")}


@pytest.fixture
def podman_domain(podman: Any, domain_name: str) -> Iterator[str]:
    """The test's domain, its containers and networks removed from Podman afterwards whatever happened."""
    yield domain_name
    label = f"io.pnr.domain={domain_name}"
    for container in podman.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in podman.networks.list(filters={"label": label}):
        network.remove()
    for image in podman.images.list(filters={"label": label}):
        podman.images.remove(image.id, force=True)


def _chunk(
    pre: str, name: str, gate: str, command: str, check: dict[str, Any] | None, **container: Any
) -> dict[str, Any]:
    signal = f"{name}_ready"
    body: dict[str, Any] = {
        "name": name,
        "gatekeeper": {gate: {"prompt": f"is {gate}?", "response": ["yes"], "tv": "Y"}},
        "flowout": {signal: {"prompt": f"is {name} ready?", "response": ["yes"], "tv": "Y"}},
        "container": {"name": pre + name, "image": TEST_IMAGE, "command": ["sh", "-c", command], **container},
    }
    if check is None:
        body["kind"] = "job"
    else:
        body["health_check"] = {
            **FAST,
            **check,
            "status_mapping": {
                "success": {"key": signal, "response": ["yes"], "tv": "Y"},
                "failure": {"key": signal, "response": ["no"], "tv": "N"},
            },
        }
    return body


def _chain(domain: str) -> dict[str, Any]:
    """db (log probe, init) → web (http on a published port) → migrate (a job that reaches web by its name on
    the domain network) → worker (exec probe) → edge (tcp on a published port)."""
    pre = domain + "-"
    chunks = [
        _chunk(
            pre,
            "db",
            "system_ready",
            "echo booting; sleep 0.5; echo 'ready to accept connections'; exec sleep 600",
            {"type": "log", "pattern": "ready to accept connections"},
            init=True,
        ),
        _chunk(
            pre,
            "web",
            "db_ready",
            "trap 'exit 0' TERM; sleep 0.5; httpd -f -p 8080 -h /www & wait",
            {"type": "http", "port_key": "8080", "path": "/index.html"},
            ports={"8080": str(free_port())},
        ),
        _chunk(pre, "migrate", "web_ready", "wget -q -O /dev/null http://web:8080/index.html && echo migrated", None),
        _chunk(
            pre,
            "worker",
            "migrate_ready",
            "trap 'exit 0' TERM; sleep 0.5; touch /tmp/ready; sleep 600 & wait",
            {"type": "exec", "command": "sh -c 'test -f /tmp/ready && echo ready'", "output_contains": "ready"},
        ),
        _chunk(
            pre,
            "edge",
            "worker_ready",
            "trap 'exit 0' TERM; sleep 0.5; nc -ll -p 9000 -e cat & wait",
            {"type": "tcp", "port_key": "9000"},
            ports={"9000": str(free_port())},
        ),
    ]
    return {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}}


def _ids(podman: Any, domain: str) -> dict[str, str]:
    found = podman.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"})
    return {c.labels["io.pnr.chunk"]: c.id for c in found}


def _ok(proc: Any) -> str:
    text: str = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    return text


def test_a_chain_converges_reports_and_goes_down_on_podman(tmp_path, podman, podman_env, podman_domain):
    domain = podman_domain
    data = _chain(domain)
    cfg = write_config(tmp_path / "chain.json", data)
    run = ["--runtime-dir", str(tmp_path / "rt")]

    doctor = pnr_cli("doctor", env=podman_env)  # says which engine it found
    assert "Podman" in doctor.stdout and podman_env["DOCKER_HOST"] in doctor.stdout, doctor.stdout + doctor.stderr
    up = _ok(pnr_cli("up", str(cfg), *run, env=podman_env))
    assert "5 chunks completed" in up, up
    ids = _ids(podman, domain)
    assert set(ids) == {"db", "web", "migrate", "worker", "edge"}, ids
    states = {name: podman.api.inspect_container(cid)["State"] for name, cid in ids.items()}
    assert states["migrate"]["Status"] == "exited" and states["migrate"]["ExitCode"] == 0, states["migrate"]
    assert all(s["Running"] for n, s in states.items() if n != "migrate"), states

    # convergence: unchanged → every service reused; a changed env → only that chunk recreated
    again = _ok(pnr_cli("up", str(cfg), *run, env=podman_env))
    for name in ("db", "web", "worker", "edge"):
        assert re.search(rf"\b{name}\s+probing\s+\S+ reused", again), again
    assert {n: i for n, i in _ids(podman, domain).items() if n != "migrate"} == {
        n: i for n, i in ids.items() if n != "migrate"
    }
    changed = copy.deepcopy(data)
    changed["cpuxs"]["main"]["design_chunks"][3]["container"]["env"] = {"MODE": "two"}
    write_config(cfg, changed)
    third = _ok(pnr_cli("up", str(cfg), *run, env=podman_env))
    assert re.search(r"\bworker\s+starting\s+recreating \S+: env\.MODE", third), third
    now = _ids(podman, domain)
    assert now["worker"] != ids["worker"] and now["db"] == ids["db"] and now["web"] == ids["web"], (ids, now)

    status = pnr_cli("status", str(cfg), "--json", *run, env=podman_env)
    _ok(status)
    chunks = json.loads(status.stdout)["chunks"]
    assert {n: c["status"] for n, c in chunks.items()} == dict.fromkeys(ids, "completed"), chunks

    logs = _ok(pnr_cli("logs", str(cfg), "db", "migrate", env=podman_env))
    assert re.search(r"^db\s*\| ready to accept connections$", logs, re.M), logs
    assert re.search(r"^migrate\s*\| migrated$", logs, re.M), logs

    down = _ok(pnr_cli("down", str(cfg), *run, env=podman_env))
    assert f"removed container {domain}-edge" in down, down
    label = f"io.pnr.domain={domain}"
    assert not podman.containers.list(all=True, filters={"label": label})
    assert not podman.networks.list(filters={"label": label})


def test_a_build_and_a_bind_work_and_a_healthcheck_podman_never_runs_fails_clearly(
    tmp_path, podman, podman_env, podman_domain
):
    """Podman builds from build_path (buildah) and binds a relative host path; it runs HEALTHCHECKs with systemd
    timers, so without systemd the `docker` probe ends with what to do instead of waiting out its deadline."""
    domain = podman_domain
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN echo built > /built\n", encoding="utf-8")
    built = _chunk(
        domain + "-",
        "built",
        "system_ready",
        'test "$(cat /built)" = built && test -f /ctx/Dockerfile && echo built-and-mounted; exec sleep 600',
        {"type": "log", "pattern": "^built-and-mounted$"},
    )
    built["container"].update(image=None, build_path="ctx", init=True, volumes=["./ctx:/ctx:ro"])
    checked = _chunk(
        domain + "-",
        "checked",
        "built_ready",
        "touch /tmp/healthy; exec sleep 600",
        {"type": "docker", "deadline_seconds": 120},
        image=HEALTH_IMAGE,
        init=True,
    )
    cfg = write_config(
        tmp_path / "podman.json", {"name": domain, "cpuxs": {"main": {"design_chunks": [built, checked]}}}
    )

    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=podman_env)
    text = up.stdout + up.stderr
    assert "Traceback" not in text and re.search(r"\bbuilt\s+ready\b", text), text
    if Path("/run/systemd/system").is_dir():  # a Podman with systemd runs the check
        assert up.returncode == 0, text
    else:
        assert up.returncode == 1, text
        assert "has run no HEALTHCHECK" in text and "use an exec probe" in text, text
    _ok(pnr_cli("down", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=podman_env))
