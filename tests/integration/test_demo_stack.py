"""The demo stack (config/dev_stack.json) against the real engine and real Prefect: web → api → redis."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, free_port, write_config

from pnr.prefect.flows import bring_up, tear_down

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

DEMO_IMAGES = ("pnr-demo/redis:1", "pnr-demo/api:1", "pnr-demo/web:1")


@pytest.fixture(scope="module")
def demo_images(docker_client: Any) -> None:
    """Build the demo images with the repo's script when one is missing (the script is cached)."""
    import docker.errors

    missing = []
    for ref in DEMO_IMAGES:
        try:
            docker_client.images.get(ref)
        except docker.errors.ImageNotFound:
            missing.append(ref)
    if missing:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build_demo_images.sh")], capture_output=True, text=True, timeout=1800
        )
        assert proc.returncode == 0, f"build_demo_images.sh failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"


def _isolated_copy(tmp_path: Path, domain: str) -> tuple[Path, dict[str, int]]:
    """config/dev_stack.json with its own domain, container names and host ports (a running demo is untouched)."""
    data = json.loads((ROOT / "config" / "dev_stack.json").read_text())
    data["name"] = domain
    ports: dict[str, int] = {}
    for chunk in data["cpuxs"]["stack_startup"]["design_chunks"]:
        container = chunk["container"]
        container["name"] = f"{domain}-{chunk['name']}"
        (cport,) = container["ports"]
        ports[chunk["name"]] = free_port()
        container["ports"] = {cport: f"127.0.0.1:{ports[chunk['name']]}"}
    return write_config(tmp_path / "dev_stack.json", data), ports


def test_demo_stack_serves_redis_data_through_api_and_web(
    tmp_path, runtime_dir, domain_name, docker_client, demo_images, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    cfg, ports = _isolated_copy(tmp_path, domain_name)
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=120)
    chunks = result["cpuxs"]["stack_startup"]
    assert {n: c["phase"] for n, c in chunks.items()} == {"redis": "ready", "api": "ready", "web": "ready"}
    assert {k: v["tv"] for k, v in result["signals"].items()} == {
        "system_ready": "Y",
        "redis_ready": "Y",
        "api_ready": "Y",
        "web_ready": "Y",
    }
    # readiness order: each tier started only after the one below answered its probe
    assert chunks["api"]["started_at"] >= chunks["redis"]["ready_at"]
    assert chunks["web"]["started_at"] >= chunks["api"]["ready_at"]

    url = f"http://127.0.0.1:{ports['web']}/"
    first = httpx.get(url, timeout=5)
    second = httpx.get(url, timeout=5)
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    a, b = first.json(), second.json()
    assert a["greeting"] == "Hello from redis via the pnr demo"  # stored in redis by the api
    assert b["hits"] == a["hits"] + 1  # INCR in redis: the page really went web → api → redis
    api = docker_client.containers.get(f"{domain_name}-api")
    assert b["served_by"] == api.attrs["Config"]["Hostname"]  # answered by the api container, via nginx
    assert httpx.get(f"http://127.0.0.1:{ports['api']}/health", timeout=5).status_code == 200

    report = tear_down(str(cfg), runtime_dir=str(runtime_dir))
    assert sorted(report["containers"]) == sorted(f"{domain_name}-{n}" for n in ("redis", "api", "web"))
    label = f"io.pnr.domain={domain_name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2)


def test_public_variant_validates() -> None:
    from pnr.model.plan import load_plan

    plan = load_plan(ROOT / "config" / "dev_stack_public.json")
    assert [c.container.image for c in plan.chunks.values()] == ["redis:7", "python:3.12-slim", "nginx:1.25"]
    # its volumes point at the demo's own API and nginx entrypoint, so the stack is the same software
    for chunk in plan.chunks.values():
        for vol in chunk.container.volumes:
            assert (ROOT / "config" / vol.split(":")[0]).resolve().is_file(), vol
