"""pnr's resident server with its stretched service loops still does what users rely on: a deployment's active
schedule gets flow runs, and a scheduled run that did not start is marked Late (real server, real Prefect client).

The server runs in a state dir and on a port of the test's own and is stopped by its pid afterwards, also when
the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port

from pnr.backend import server

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

# SERVICE_LOOPS: recently changed deployments every 30 s, late runs every 30 s (+ 15 s after the run's time)
WAIT_SECONDS = 120


@pytest.fixture
def api_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    state = tmp_path / "state"
    monkeypatch.setenv("PNR_STATE_DIR", str(state))
    for name in ("PNR_SERVER_HOST", "PNR_SERVER_PORT", "PNR_SERVER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("PREFECT_SERVER_SERVICES_"):  # pnr's loops, not a caller's
            monkeypatch.delenv(name)
    info = server.start(port=free_port(), timeout=180, state_dir=state)
    try:
        yield info.api_url
    finally:
        with contextlib.suppress(Exception):
            server.stop(state_dir=state)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.pid, signal.SIGKILL)  # its own session; gone already after a clean stop


async def _scenario(api_url: str) -> tuple[int, str]:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    @flow(name=f"pnr-test-services-{uuid.uuid4().hex[:8]}")
    def noop() -> None:
        pass

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            flow_id = await client.create_flow(noop)
            schedule = DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(hours=1)), active=True)
            deployment_id = await client.create_deployment(flow_id=flow_id, name="hourly", schedules=[schedule])
            missed = await client.create_flow_run(
                noop, state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=2))
            )
            scheduled, state = 0, ""
            for _ in range(WAIT_SECONDS):
                only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
                scheduled = len(await client.read_flow_runs(deployment_filter=only))
                state = (await client.read_flow_run(missed.id)).state_name or ""
                if scheduled and state == "Late":
                    break
                await asyncio.sleep(1)
            return scheduled, state


def test_schedules_get_runs_and_missed_runs_are_marked_late(api_url: str) -> None:
    scheduled, state = asyncio.run(_scenario(api_url))
    assert scheduled > 0, "the scheduler created no runs for an active hourly schedule"
    assert state == "Late"


def test_an_automation_reacts_to_an_event_on_pnrs_server(api_url: str) -> None:
    """Reactive triggers act on each event as it arrives (the housekeeping loop is what pnr slows down): an
    automation that expects a state event of one flow run is triggered once the run is created."""
    import httpx

    name = f"pnr-test-react-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=api_url, timeout=30) as client:
        automation = {
            "name": name,
            "trigger": {
                "type": "event",
                "posture": "Reactive",
                "expect": ["prefect.flow-run.*"],
                "match": {"prefect.resource.name": name},
                "threshold": 1,
                "within": 0,
            },
            "actions": [{"type": "do-nothing"}],
        }
        created = client.post("/automations/", json=automation)
        assert created.status_code == 201, created.text
        automation_id = created.json()["id"]
        flow = client.post("/flows/", json={"name": name}).json()
        run = client.post("/flow_runs/", json={"flow_id": flow["id"], "name": name, "state": {"type": "SCHEDULED"}})
        assert run.status_code == 201, run.text
        wanted = {
            "event": {"name": ["prefect.automation.triggered"]},
            "resource": {"id": [f"prefect.automation.{automation_id}"]},
        }
        found: list[object] = []
        for _ in range(WAIT_SECONDS):
            found = client.post("/events/filter", json={"filter": wanted, "limit": 5}).json().get("events") or []
            if found:
                break
            time.sleep(1)
        assert found, f"automation {automation_id} was not triggered"
