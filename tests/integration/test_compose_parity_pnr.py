"""Parity with docker-compose on a real engine: each example under config/compose/
that docker-compose 1.29.2 runs (chain.yml, demo.yml, full.yml) is run twice on the same engine —

1. `docker-compose up -d` (the helper of test_compose_parity.py: the engine's events give each service's start,
   first healthy status and exit 0), then `docker-compose down`;
2. `pnr import` of the file, `pnr up` of the result (through the CLI), with the engine's events of the domain's
   containers (start, exit), each container's `State.StartedAt` and each chunk's readiness (`ready_at` of the
   chunk-state file: the moment its probe passed), then `pnr down --volumes`;

and compared: the same set of containers (one per service), the same dependency order (every service started
after the event its dependency condition stands for, and a service never before anything it depends on,
transitively, in either run), and `pnr down` leaves no container, network or volume of the domain behind.
Typical time on a 2-core machine: three minutes for the three files, half of it chain.yml's `pnr down` (busybox
httpd as PID 1 ignores SIGTERM, so each of its six levels waits the 5 s grace period; compose's is `down -t 2`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import pnr_cli

import pnr
from pnr.lifecycle.logs import parse_stamp

from .test_compose_parity import BUILT_IMAGES, EXAMPLES, compose_up, ensure_images

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]


def _closure(depends_on: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(dependency, dependent) pairs, transitively."""
    pairs: set[tuple[str, str]] = set()

    def visit(node: str, dependent: str) -> None:
        for dep in depends_on.get(node, []):
            if (dep, dependent) not in pairs:
                pairs.add((dep, dependent))
                visit(dep, dependent)

    for name in depends_on:
        visit(name, name)
    return pairs


def pnr_up(client: Any, domain_file: Path, domain: str, runtime_dir: Path) -> dict[str, dict[str, float]]:
    """`pnr up` the imported domain; per chunk: started (its container's start), ready (its probe passed; a job:
    exit 0 seen by pnr), completed (exit 0 event of a job)."""
    stream = client.api.events(
        decode=True, filters={"type": "container", "label": f"io.pnr.domain={domain}", "event": ["start", "die"]}
    )
    events: dict[str, dict[str, float]] = {}

    def collect() -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when closed
            for event in stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                chunk, action = attrs.get("io.pnr.chunk"), event.get("Action") or event.get("status")
                what = "start" if action == "start" else "completed" if attrs.get("exitCode") == "0" else None
                if chunk and what:
                    events.setdefault(chunk, {}).setdefault(what, event["timeNano"] / 1e9)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        up = pnr_cli("up", str(domain_file), "--runtime-dir", str(runtime_dir), "--timeout", "240", timeout=400)
        assert up.returncode == 0, f"pnr up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        time.sleep(1)  # the last events
    finally:
        stream.close()
        reader.join(timeout=10)
    recorded = json.loads((runtime_dir / ".pnr" / f"{domain}.chunks.json").read_text())["chunks"]
    times: dict[str, dict[str, float]] = {}
    for container in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}):
        chunk = container.labels["io.pnr.chunk"]
        started = parse_stamp(container.attrs["State"]["StartedAt"])
        assert started is not None
        entry = {"started": started, **{k: v for k, v in events.get(chunk, {}).items() if k == "completed"}}
        if recorded.get(chunk, {}).get("ready_at"):
            entry["ready"] = float(recorded[chunk]["ready_at"])
        assert chunk not in times, f"two containers for chunk {chunk}"
        times[chunk] = entry
    return times


def _when(times: dict[str, dict[str, float]], dep: str, what: str, compose: bool) -> float:
    """The moment a gate signal `<dep>_<what>` stands for, in one run."""
    if what == "started":
        return times[dep]["started"]
    if what == "healthy":
        return times[dep]["healthy" if compose else "ready"]
    return times[dep]["completed"]


@pytest.mark.parametrize("example", ["chain", "demo", "full"])
def test_pnr_up_of_the_imported_file_matches_docker_compose(
    tmp_path: Path, docker_client: Any, docker_compose: str, example: str
) -> None:
    ensure_images(docker_client, example)
    file = EXAMPLES / f"{example}.yml"
    built = BUILT_IMAGES.get(example)
    had_image = False
    if built:
        with contextlib.suppress(Exception):
            docker_client.images.get(built)
            had_image = True
    domain = f"pp{example}{uuid.uuid4().hex[:6]}"
    domain_file = tmp_path / f"{domain}.json"
    runtime_dir = tmp_path / "runtime"
    began = time.monotonic()
    try:
        compose = compose_up(docker_compose, docker_client, file)
        compose_s = time.monotonic() - began
        imported = pnr_cli("import", str(file), "--name", domain, "-o", str(domain_file))
        assert imported.returncode == 0, imported.stderr
        plan = pnr.load_plan(str(domain_file))
        ours = pnr_up(docker_client, domain_file, domain, runtime_dir)
        up_s = time.monotonic() - began - compose_s
        down = pnr_cli("down", str(domain_file), "--runtime-dir", str(runtime_dir), "--volumes")
        assert down.returncode == 0, down.stdout + down.stderr
        down_s = time.monotonic() - began - compose_s - up_s
        label = {"label": f"io.pnr.domain={domain}"}
        assert docker_client.containers.list(all=True, filters=label) == []
        assert docker_client.networks.list(filters=label) == []
        assert docker_client.volumes.list(filters=label) == []
        assert not (runtime_dir / f"{domain}.pnr.json").exists()
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}):
            container.remove(force=True)
        for net in docker_client.networks.list(filters={"label": f"io.pnr.domain={domain}"}):
            net.remove()
        for vol in docker_client.volumes.list(filters={"label": f"io.pnr.domain={domain}"}):
            vol.remove(force=True)
        if built and not had_image:
            subprocess.run(["docker", "rmi", "-f", built], capture_output=True, check=False, env=dict(os.environ))

    # the same containers: one per service, in both runs
    assert set(ours) == set(compose) == set(plan.chunks), (sorted(ours), sorted(compose))

    # every gate: both started the dependent after the event its condition stands for
    (cpux,) = plan.domain.cpuxs.values()
    for chunk in cpux.design_chunks:
        for signal in chunk.gatekeeper:
            if signal == "system_ready":
                continue
            dep, _, what = signal.rpartition("_")
            for run, is_compose in ((compose, True), (ours, False)):
                moment = _when(run, dep, what, is_compose)
                assert run[chunk.name]["started"] >= moment, (
                    f"{'compose' if is_compose else 'pnr'} started {chunk.name} "
                    f"{moment - run[chunk.name]['started']:.3f}s before {dep} was {what}"
                )

    # the same dependency order: nothing started before anything it depends on, transitively, in either run
    for dep, dependent in _closure(plan.depends_on):
        assert compose[dep]["started"] < compose[dependent]["started"], ("compose", dep, dependent)
        assert ours[dep]["started"] < ours[dependent]["started"], ("pnr", dep, dependent)
    # and the readiness pnr probed for is where compose saw a healthy container
    assert {n for n, t in ours.items() if "ready" in t} >= {n for n, t in compose.items() if "healthy" in t}

    def rel(run: dict[str, dict[str, float]], key: str) -> str:
        t0 = min(t["started"] for t in run.values())
        return ", ".join(f"{n}={t[key] - t0:.2f}" for n, t in sorted(run.items(), key=lambda i: i[1]["started"]))

    print(
        f"\n{example}: compose (up+down) {compose_s:.1f}s, pnr import+up {up_s:.1f}s, pnr down {down_s:.1f}s"
        f"\n  started, compose: {rel(compose, 'started')}\n  started, pnr:     {rel(ours, 'started')}"
    )
