"""Every probe kind and job chunks against the real Docker engine and real Prefect flows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TEST_IMAGE, free_port, pnr_cli, write_config

from pnr.exceptions import ChunkFailed, StallError
from pnr.prefect.flows import bring_up, tear_down

pytestmark = [pytest.mark.docker, pytest.mark.prefect]

HEALTH_IMAGE = "pnr-test/busybox-health:1"
FAST = {"interval_seconds": 0.2, "timeout_seconds": 2, "deadline_seconds": 30}


@pytest.fixture(scope="module")
def health_image(docker_client: Any) -> str:
    """The busybox image with a HEALTHCHECK (built by the idempotent test-image script if missing)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "build_test_images.sh")], check=True, capture_output=True)
    docker_client.images.get(HEALTH_IMAGE)
    return HEALTH_IMAGE


def _chunk(
    name: str,
    prefix: str,
    check: dict[str, Any] | None,
    command: str,
    *,
    gate: dict[str, str] | None = None,
    image: str = TEST_IMAGE,
    kind: str | None = None,
    **container: Any,
) -> dict[str, Any]:
    signal = f"{name}_ready"
    body: dict[str, Any] = {
        "name": name,
        "gatekeeper": {
            s: {"prompt": f"is {s}?", "response": ["yes"], "tv": tv}
            for s, tv in (gate or {"system_ready": "Y"}).items()
        },
        "flowout": {signal: {"prompt": f"is {name} ready?", "response": ["yes"], "tv": "Y"}},
        "container": {"name": prefix + name, "image": image, "command": ["sh", "-c", command], **container},
    }
    if check is not None:
        body["health_check"] = {
            **check,
            "status_mapping": {
                "success": {"key": signal, "response": ["yes"], "tv": "Y"},
                "failure": {"key": signal, "response": ["no"], "tv": "N"},
            },
        }
    if kind:
        body["kind"] = kind
    return body


def _signals(runtime_dir: Path, domain: str) -> dict[str, str]:
    from pnr.runtime.store import read_state

    state, _ = read_state(runtime_dir, domain)
    return {k: v.tv for k, v in state.items()}


def test_every_probe_kind_against_real_containers(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup, health_image
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    port = free_port()
    signal_doc = json.dumps({"svc_self_ready": {"prompt": "is svc up?", "response": ["yes"], "tv": "y"}})
    chunks = [
        # http: POST with a header, "2xx", a JSON field; the document appears 1 s after start
        _chunk(
            "web",
            pre,
            {
                "type": "http",
                "port_key": "8080",
                "path": "/status.json",
                "method": "GET",
                "headers": {"Accept": "application/json"},
                "expected_code": "2xx",
                "json_path": "$.checks[0].status",
                "json_value": "UP",
                "body_regex": '"UP"',
                **FAST,
            },
            "mkdir -p /w; httpd -p 8080 -h /w; sleep 1; "
            'echo \'{"checks": [{"status": "UP"}]}\' > /w/status.json; exec sleep 600',
            ports={"8080": str(port)},
        ),
        # exec: ready once a file exists; output matched; no port at all
        _chunk(
            "worker",
            pre,
            {"type": "exec", "command": "sh -c 'test -f /tmp/ready && echo ready'", "output_contains": "ready", **FAST},
            "sleep 1; touch /tmp/ready; exec sleep 600",
        ),
        # log: the second occurrence of the line counts
        _chunk(
            "db",
            pre,
            {"type": "log", "pattern": "ready to accept connections", "count": 2, **FAST},
            "echo booting; echo 'ready to accept connections'; sleep 1; echo restarting; "
            "echo 'ready to accept connections'; exec sleep 600",
        ),
        # docker: HEALTHCHECK turns unhealthy first (retries=1, every 0.5 s), healthy after ~2 s
        _chunk(
            "cache", pre, {"type": "docker", **FAST}, "sleep 2; touch /tmp/healthy; exec sleep 600", image=health_image
        ),
        # signal: the container writes its own PnR file into the mounted runtime folder
        _chunk(
            "svc",
            pre,
            {"type": "signal", "signal": "svc_self_ready", **FAST},
            f"sleep 1; echo '{signal_doc}' > /runtime/{pre}svc.json; exec sleep 600",
            mount_runtime=True,
        ),
        # socket: a line protocol (redis-like PING → +PONG) on a published port, answering after 1 s
        _chunk(
            "kv",
            pre,
            {"type": "socket", "port_key": "6379", "send": "PING\r\n", "expect": "^\\+PONG", **FAST},
            "sleep 1; exec nc -ll -p 6379 -e sh -c 'read line; echo +PONG'",
            ports={"6379": str(free_port())},
        ),
        # tcp on the domain network: nothing published
        _chunk(
            "queue",
            pre,
            {"type": "tcp", "port_key": "5672", "target": "network", **FAST},
            "sleep 1; exec nc -ll -p 5672 -e cat",
        ),
        # all: a log line and an http answer on the network address
        _chunk(
            "api",
            pre,
            {
                "type": "all",
                **FAST,
                "checks": [
                    {"type": "log", "pattern": "^listening$"},
                    {"type": "http", "port_key": "80", "target": "network", "path": "/index.html"},
                ],
            },
            "sleep 1; echo listening; exec httpd -f -p 80 -h /www",
        ),
        # any: a never-passing exec or an http answer
        _chunk(
            "edge",
            pre,
            {
                "type": "any",
                **FAST,
                "checks": [
                    {"type": "exec", "command": "false"},
                    {"type": "tcp", "port_key": "80", "target": "network"},
                ],
            },
            "exec httpd -f -p 80 -h /www",
        ),
    ]
    gate = {f"{c['name']}_ready": "Y" for c in chunks}
    # a job that runs after everything is ready: exit 0 writes its flowout
    chunks.append(_chunk("migrate", pre, None, "echo migrating; sleep 0.5; echo done", gate=gate, kind="job"))
    cfg = write_config(tmp_path / "kinds.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": chunks}}})

    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90)

    phases = {n: r["phase"] for n, r in result["cpuxs"]["main"].items()}
    assert set(phases.values()) == {"ready"}, phases
    signals = _signals(runtime_dir, domain_name)
    assert all(signals[f"{c['name']}_ready"] == "Y" for c in chunks), signals
    assert signals["svc_self_ready"] == "Y"
    # the docker probe kept going through `unhealthy` (the engine keeps only its last 5 checks, so judge by
    # time: the HEALTHCHECK cannot pass before /tmp/healthy exists, 2 s after start) instead of failing
    health = docker_client.api.inspect_container(pre + "cache")["State"]["Health"]
    cache = result["cpuxs"]["main"]["cache"]
    assert health["Status"] == "healthy", health
    assert cache["ready_at"] - cache["started_at"] >= 2.0, cache
    # the job ran to completion after every service was ready
    job = docker_client.api.inspect_container(pre + "migrate")["State"]
    assert job["Status"] == "exited" and job["ExitCode"] == 0
    ready_at = max(r["ready_at"] for n, r in result["cpuxs"]["main"].items() if n != "migrate")
    assert result["cpuxs"]["main"]["migrate"]["started_at"] >= ready_at
    # `pnr status` afterwards: the job that exited 0 with its flowout written is completed, not stopped
    status = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", str(runtime_dir)).stdout)
    assert {n: c["status"] for n, c in status["chunks"].items()} == {n: "completed" for n in phases}, status

    report = tear_down(str(cfg), runtime_dir=str(runtime_dir))
    assert pre + "migrate" in report["containers"]  # the exited job is cleaned up too
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})


def test_failing_job_fails_with_exit_code_and_log_tail_and_down_removes_it(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [
        _chunk(
            "seed", pre, None, "echo 'loading fixtures'; echo 'relation users does not exist' >&2; exit 3", kind="job"
        ),
        _chunk("app", pre, {"type": "exec", "command": "true", **FAST}, "exec sleep 600", gate={"seed_ready": "Y"}),
    ]
    cfg = write_config(tmp_path / "job.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": chunks}}})
    with pytest.raises(StallError) as info:  # app can never start: the stall names the failed job
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    text = str(info.value)
    assert (
        "app waits on seed_ready is N" in text
        and "exited with code 3" in text
        and "relation users does not exist" in text
        and "seed_ready=N" in text
    )
    assert _signals(runtime_dir, domain_name)["seed_ready"] == "N"
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(pre + "app")  # never started: its gate never opened
    report = tear_down(str(cfg), runtime_dir=str(runtime_dir))
    assert report["containers"] == [pre + "seed"]


def test_exec_probe_fails_fast_when_the_container_exits_and_docker_probe_without_healthcheck(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [
        _chunk(
            "crash",
            pre,
            {"type": "exec", "command": "test -f /nope", "interval_seconds": 0.2, "deadline_seconds": 120},
            "echo 'fatal: bad config'; sleep 1; exit 7",
        ),
        _chunk("plain", pre, {"type": "docker", "deadline_seconds": 120}, "exec sleep 600"),
    ]
    cfg = write_config(tmp_path / "fast.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": chunks}}})
    with pytest.raises(ChunkFailed) as info:
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=120)
    text = str(info.value)
    assert "exited with code 7" in text and "fatal: bad config" in text
    assert "no HEALTHCHECK" in text and "waiting will not help" in text
    assert _signals(runtime_dir, domain_name) == {"system_ready": "Y", "crash_ready": "N", "plain_ready": "N"}
