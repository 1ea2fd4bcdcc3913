"""A HEALTHCHECK the engine never runs (Podman without systemd runs none) ends the `docker` probe with what to do,
instead of waiting out its deadline in `starting`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import ROOT

from pnr.engines.dockerapi import HEALTH_NEVER_RUN
from pnr.engines.engine import Engine
from pnr.model import parse_domain
from pnr.probes import NeverReady, ProbeContext, make_probe
from pnr.probes.docker import DockerProbe

SECOND = 1_000_000_000


def _info(
    age: float, log: list[dict[str, Any]] | None, *, interval: float = 0.5, running: bool = True
) -> dict[str, Any]:
    started = datetime.fromtimestamp(time.time() - age, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # ns, as engines
    return {
        "State": {"Running": running, "StartedAt": started, "Health": {"Status": "starting", "Log": log}},
        "Config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": int(interval * SECOND), "Timeout": 2 * SECOND}},
    }


class _Api:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return self.info


def _health(info: dict[str, Any]) -> tuple[str | None, str]:
    client = type("Client", (), {"api": _Api(info)})()
    return Engine(client=client, host="unix:///nowhere.sock").health("c0ffee")


def test_no_check_run_long_after_the_first_was_due_is_never_run() -> None:
    status, detail = _health(_info(60, None))  # due after 2 x 0.5 + 2 + 10 s
    assert status == HEALTH_NEVER_RUN and "use an exec probe" in detail and "Podman" in detail, detail


@pytest.mark.parametrize(
    ("age", "interval", "running"),
    [
        (5, 0.5, True),  # not due yet
        (600, 300, True),  # a long interval: still not due
        (60, 0.5, False),
    ],
)
def test_a_check_not_yet_due_is_still_starting(age: float, interval: float, running: bool) -> None:
    assert _health(_info(age, None, interval=interval, running=running))[0] == "starting"


def test_a_check_that_ran_reports_its_status() -> None:
    info = _info(60, [{"ExitCode": 1, "Output": "no file"}])
    info["State"]["Health"]["Status"] = "unhealthy"
    assert _health(info) == ("unhealthy", "exit 1: no file")


class _Never:
    def health(self, cid: str) -> tuple[str | None, str]:
        return HEALTH_NEVER_RUN, "the engine has run no HEALTHCHECK"


def test_the_docker_probe_stops_at_once_on_never_run() -> None:
    data = json.loads((ROOT / "config" / "example_chain.json").read_text(encoding="utf-8"))
    chunk = data["cpuxs"]["chain_startup"]["design_chunks"][0]
    chunk["health_check"] = {"type": "docker", "status_mapping": chunk["health_check"]["status_mapping"]}
    check = parse_domain(data).cpuxs["chain_startup"].design_chunks[0].health_check
    probe = make_probe(check, ProbeContext(engine=_Never(), container_id="c0ffee", network="pnr_d"))
    assert isinstance(probe, DockerProbe)
    with pytest.raises(NeverReady, match="no HEALTHCHECK"):
        probe.attempt()
