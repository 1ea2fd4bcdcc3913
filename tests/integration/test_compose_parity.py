"""Start order: docker-compose 1.29.2 (Debian's `docker-compose`) against what pnr makes of the same file.

For each example under config/compose/, `docker-compose up -d` runs it and the engine's events record when
each container started, became healthy and exited; then the domain `pnr import` makes of the file is planned
(`pnr.make_plan`) and compared:

- the same dependencies: every compose `depends_on` edge is a pnr gate on that service, and nothing more;
- the same conditions: compose started each service only after the event pnr's gate signal stands for
  (`<svc>_started`: its start; `<svc>_healthy`: its first healthy status; `<svc>_completed`: its exit 0) —
  except where the importer notes that pnr waits longer (service_started on a probed service), where only
  the start order is compared;
- the plan's levels are consistent with compose's start times.

Running the same files with `pnr up` belongs to the engine-level integration tests.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import pnr
from pnr.compose import import_compose

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "compose"
BUILT_IMAGES = {"full": "pnr-compose-full/app:1"}  # built by compose from config/compose/full/app
NEEDS_IMAGES = {"demo": ("pnr-demo/redis:1", "pnr-demo/api:1", "pnr-demo/web:1")}
EVENT = {"start": "started", "health_status: healthy": "healthy"}


def ensure_images(docker_client: Any, example: str) -> None:
    """The demo images are built locally (no registry): build them once if missing (cached afterwards)."""
    for image in NEEDS_IMAGES.get(example, ()):
        try:
            docker_client.images.get(image)
        except Exception:  # any failure: the image is not usable here
            build = subprocess.run(
                ["bash", str(ROOT / "scripts" / "build_demo_images.sh")], capture_output=True, text=True, timeout=1800
            )
            assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
            return


def compose_up(binary: str, client: Any, file: Path) -> dict[str, dict[str, float]]:
    """Run the file with docker-compose; per service, the engine's times of start / healthy / exit 0.

    Events are read live: the engine keeps only its last 256 events, and healthchecks make many."""
    project = f"pnrparity{uuid.uuid4().hex[:8]}"
    cmd = [binary, "-p", project, "-f", str(file), "--no-ansi"]
    env = {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}  # no buildx here
    stream = client.api.events(
        decode=True,
        filters={
            "type": "container",
            "label": f"com.docker.compose.project={project}",
            "event": ["start", "die", "health_status"],
        },
    )
    times: dict[str, dict[str, float]] = {}

    def collect() -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when it is closed
            for event in stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                service = attrs.get("com.docker.compose.service")
                action = event.get("Action") or event.get("status")
                exited_ok = action == "die" and attrs.get("exitCode") == "0"
                what = EVENT.get(action) or ("completed" if exited_ok else None)
                if service and what:
                    times.setdefault(service, {}).setdefault(what, event["timeNano"] / 1e9)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        proc = subprocess.run([*cmd, "up", "-d"], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"docker-compose up failed:\n{proc.stderr[-3000:]}"
        time.sleep(1)  # the last events
    finally:
        stream.close()
        reader.join(timeout=10)
        subprocess.run(
            [*cmd, "down", "-v", "--remove-orphans", "-t", "2"], env=env, capture_output=True, timeout=300, check=False
        )
    return dict(times)


def plan_of(domain: dict[str, Any]) -> pnr.Plan:
    return pnr.make_plan(pnr.parse_domain(copy.deepcopy(domain)))


def compose_edges(file: Path) -> dict[str, set[str]]:
    import yaml

    services = yaml.safe_load(file.read_text())["services"]
    return {name: set(svc.get("depends_on") or []) for name, svc in services.items()}


@pytest.mark.parametrize("example", ["chain", "full", "demo"])
def test_start_order_matches_docker_compose(docker_client: Any, docker_compose: str, example: str) -> None:
    ensure_images(docker_client, example)
    file = EXAMPLES / f"{example}.yml"
    result = import_compose(file, name=example, environ={})
    plan = plan_of(result.domain)
    built = BUILT_IMAGES.get(example)
    had_image = False
    if built:
        try:
            docker_client.images.get(built)
            had_image = True
        except Exception:
            had_image = False
    try:
        times = compose_up(docker_compose, docker_client, file)
    finally:
        if built and not had_image:
            subprocess.run(["docker", "rmi", "-f", built], capture_output=True, check=False)

    # the same dependency graph
    assert {name: set(deps) for name, deps in plan.depends_on.items()} == compose_edges(file)

    # compose waited for what pnr's gates stand for (or more, where pnr is stricter: noted by the importer)
    stricter = {n.path.split(".")[1] for n in result.notes if "later than compose" in n.message}
    (cpux,) = result.domain["cpuxs"].values()
    for chunk in cpux["design_chunks"]:
        name = chunk["name"]
        for signal in chunk["gatekeeper"]:
            if signal == "system_ready":
                continue
            dep, _, what = signal.rpartition("_")
            if name in stricter:
                what = "started"
            assert what in times[dep], f"compose never saw {dep} {what}: {times[dep]}"
            assert times[name]["started"] >= times[dep][what], (
                f"compose started {name} before {dep} was {what} ({times[name]['started'] - times[dep][what]:+.3f}s)"
            )

    # the plan's levels agree with compose's start times: a later level never started before its dependencies
    level_of = {name: i for i, level in enumerate(plan.levels[example]) for name in level}
    for name, deps in plan.depends_on.items():
        for dep in deps:
            assert level_of[dep] < level_of[name]
            assert times[dep]["started"] <= times[name]["started"]
