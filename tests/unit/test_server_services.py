"""pnr's server runs every Prefect service, with the idle loops stretched (SERVICE_LOOPS): the settings are names
Prefect reads, and the docket worker that runs the services polls at pnr's pace."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import pytest
from prefect.settings import Settings

from pnr.backend import server, server_app


def test_every_service_loop_setting_is_one_prefect_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PREFECT_"):
            monkeypatch.delenv(key)
    for key, value in server.SERVER_TUNING.items():
        monkeypatch.setenv(key, value)
    services = Settings().server.services
    assert services.scheduler.enabled and services.late_runs.enabled and services.triggers.enabled
    assert services.scheduler.loop_seconds == 60
    assert services.scheduler.recent_deployments_loop_seconds == 30
    assert services.late_runs.loop_seconds == 30
    assert services.pause_expirations.loop_seconds == 60
    assert services.repossessor.loop_seconds == 60
    assert services.cleanup_reconciler.loop_seconds == 60
    assert services.foreman.loop_seconds == 30
    assert services.cancellation_cleanup.loop_seconds == 60
    assert services.task_run_recorder.batch_size == 100


def test_the_users_own_service_settings_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS", "5")
    config = server.ServerConfig.resolve(state_dir=tmp_path)
    env = server._server_env(config, "127.0.0.1", 4200, config.sqlite_url)
    assert env["PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS"] == "5"
    assert env["PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS"] == "30"


def test_the_docket_worker_polls_at_pnrs_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    from docket import Worker as docket_worker
    from prefect.server.api import background_workers
    from prefect.server.api import server as prefect_server

    monkeypatch.setattr(background_workers, "Worker", background_workers.Worker)
    monkeypatch.setattr(prefect_server, "Docket", prefect_server.Docket)
    assert server_app.quiet_docket()
    assert server_app.quiet_docket()  # a second create_app: no second wrapping
    poll = timedelta(seconds=server_app.DOCKET_POLL_SECONDS)
    docket = prefect_server.Docket(name=f"pnr-test-{id(poll)}", url="memory://")
    assert docket.heartbeat_interval == timedelta(seconds=server_app.DOCKET_HEARTBEAT_SECONDS)
    worker = background_workers.Worker(docket)
    assert worker.minimum_check_interval == poll and worker.scheduling_resolution == poll
    assert isinstance(worker, docket_worker) and type(worker).__bases__ == (docket_worker,)  # wrapped once
    given = background_workers.Worker(docket, minimum_check_interval=timedelta(seconds=3))
    assert given.minimum_check_interval == timedelta(seconds=3)


def test_the_quiet_worker_runs_tasks_due_now_and_later_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real docket (in memory) and pnr's worker: a task added for now and one due in 0.5 s both run (the
    worker starts without docket's cancellation listener), then the worker stops."""
    from datetime import UTC, datetime

    from prefect.server.api import background_workers
    from prefect.server.api import server as prefect_server

    monkeypatch.setattr(background_workers, "Worker", background_workers.Worker)
    monkeypatch.setattr(prefect_server, "Docket", prefect_server.Docket)
    assert server_app.quiet_docket()
    ran: list[str] = []

    async def note(what: str) -> None:
        ran.append(what)

    async def scenario() -> None:
        async with prefect_server.Docket(name=f"pnr-test-{os.getpid()}-{id(ran)}", url="memory://") as docket:
            docket.register(note)
            await docket.add(note)("now")
            await docket.add(note, when=datetime.now(UTC) + timedelta(seconds=0.5))("later")
            async with background_workers.Worker(docket) as worker:
                await asyncio.wait_for(worker.run_until_finished(), timeout=30)

    asyncio.run(scenario())
    assert sorted(ran) == ["later", "now"]


def test_the_automations_housekeeping_runs_at_pnrs_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reactive-triggers service asks `triggers.consumer()` with no arguments: pnr's wrapper gives it
    TRIGGER_SWEEP_SECONDS, wrapped once; an explicit granularity still wins."""
    from prefect.server.events import triggers

    original = triggers.consumer
    monkeypatch.setattr(triggers, "consumer", original)
    seen: list[timedelta] = []

    def fake(periodic_granularity: timedelta = timedelta(seconds=5)) -> Any:
        seen.append(periodic_granularity)

    monkeypatch.setattr(triggers, "consumer", fake)
    assert server_app.quiet_triggers()
    assert server_app.quiet_triggers()  # a second create_app: no second wrapping
    triggers.consumer()
    triggers.consumer(periodic_granularity=timedelta(seconds=7))
    assert seen == [timedelta(seconds=server_app.TRIGGER_SWEEP_SECONDS), timedelta(seconds=7)]
    assert triggers.consumer._pnr_original is fake  # type: ignore[attr-defined]


def test_prefects_triggers_consumer_takes_the_granularity_pnr_sets() -> None:
    import inspect

    from prefect.server.events import triggers

    consumer = getattr(triggers.consumer, "_pnr_original", triggers.consumer)
    assert "periodic_granularity" in inspect.signature(consumer).parameters


def test_uvicorns_main_loop_ticks_at_pnrs_pace_and_still_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """pnr's main loop sleeps UVICORN_TICK_SECONDS between calls of uvicorn's own on_tick, with the counter in
    tenths of a second that on_tick expects (a multiple of 10 refreshes the Date header), and returns when
    on_tick says to exit."""
    from uvicorn.server import Server

    monkeypatch.setattr(Server, "main_loop", Server.main_loop)
    assert server_app.quiet_uvicorn()
    assert server_app.quiet_uvicorn()  # a second create_app: no second wrapping
    slept: list[float] = []
    counters: list[int] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    class Fake:
        async def on_tick(self, counter: int) -> bool:
            counters.append(counter)
            return len(counters) == 4

    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(Server.main_loop(Fake()))  # type: ignore[arg-type]
    assert counters == [0, 10, 20, 30]
    assert slept == [server_app.UVICORN_TICK_SECONDS] * 3


def test_memory_is_trimmed_after_the_start_and_then_every_so_often(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda _name: Libc())
    monkeypatch.setattr(server_app, "TRIM_FIRST_SECONDS", 0.01)
    monkeypatch.setattr(server_app, "TRIM_EVERY_SECONDS", 0.01)

    async def scenario() -> None:
        assert server_app.trim_memory_later()
        while len(calls) < 3:  # the first trim, then the repeated one
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert calls[:3] == [0, 0, 0]
    assert not server_app.trim_memory_later()  # outside an event loop: nothing to schedule it on
