"""pnr's resident Prefect server (`pnr.backend.server`) with real processes: start, reuse, crash, stale pid
files, a taken port, and a PostgreSQL-backed server that records a flow's task runs.

Each test has its own state dir and port. Every server a test starts is killed by its pid afterwards, also
when the test fails (the `servers` fixture); the PostgreSQL cluster is stopped at the end of the session if
the session started it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port

from pnr.backend import server

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir of the test's own, via PNR_STATE_DIR (so subprocesses share it); no PNR_SERVER_* leaks in."""
    path = tmp_path / "state"
    monkeypatch.setenv("PNR_STATE_DIR", str(path))
    for name in ("PNR_SERVER_HOST", "PNR_SERVER_PORT", "PNR_SERVER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return path


SERVER_APPS = (b"pnr.backend.server_app:create_app", b"prefect.server.api.server:create_app")  # pnr's, Prefect's


def _is_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(app in cmdline for app in SERVER_APPS)


def _alive(pid: int) -> bool:
    """Any thread of pid still running (a killed process's main thread is a zombie before the others exit)."""
    with contextlib.suppress(ChildProcessError):  # reap our own exited children
        os.waitpid(pid, os.WNOHANG)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        with contextlib.suppress(OSError, IndexError):
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
    return False


def _kill(pid: int) -> None:
    """SIGKILL a server (and its process group) by pid, only if that pid still runs a Prefect server."""
    if not _is_server(pid):
        return
    try:
        os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _crash(pid: int) -> None:
    """SIGKILL the server process alone (as a crash would end it) and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


@pytest.fixture
def servers(state: Path) -> Iterator[Callable[[int], int]]:
    """`servers(pid)` registers a server pid to kill after the test, even when it fails; the pid in the state
    dir's pid file at the end is killed too (a server started where the test could not see its pid)."""
    pids: list[int] = []

    def register(pid: int) -> int:
        pids.append(pid)
        return pid

    yield register
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        pids.append(int(json.loads((state / "server.pid").read_text())["pid"]))
    for pid in dict.fromkeys(pids):
        _kill(pid)


def _record(state: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((state / "server.pid").read_text())
    return data


def _write_stale_record(state: Path, pid: int, port: int) -> None:
    """A pid file as pnr writes it, for a pid that is not (or no longer) pnr's server."""
    state.mkdir(parents=True, exist_ok=True)
    api = f"http://127.0.0.1:{port}/api"
    database_url = f"sqlite+aiosqlite:///{state / 'prefect-home' / 'prefect.db'}"
    record = {
        "pid": pid,
        "host": "127.0.0.1",
        "port": port,
        "api_url": api,
        "ui_url": api.removesuffix("/api"),
        "database": "sqlite",
        "database_url": database_url,
        "database_fingerprint": hashlib.sha256(database_url.encode()).hexdigest(),
        "started_at": "2026-01-01T00:00:00+00:00",
        "startup_seconds": 3.0,
        "created": None,
        "command": [],
    }
    (state / "server.pid").write_text(json.dumps(record))


ENSURE_RUNNING = (
    "import json; from pnr.backend import server; "
    "info, new = server.ensure_running(timeout=120); print(json.dumps({'pid': info.pid, 'new': new}))"
)


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str], timeout: float = 150) -> dict[str, object]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    data: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return data


# --------------------------------------------------------------------------- SQLite (the default)


def test_start_status_stop(state: Path, servers: Callable[[int], int]) -> None:
    assert server.status() is None
    port = free_port()
    info = server.start(port=port)
    servers(info.pid)

    assert info.healthy and info.port == port and info.database == "sqlite"
    assert info.api_url == f"http://127.0.0.1:{port}/api" and info.ui_url == f"http://127.0.0.1:{port}"
    assert info.startup_seconds is not None and 0 < info.startup_seconds < 90
    assert os.getsid(info.pid) == info.pid, "the server must lead a session of its own (detached)"
    assert httpx.get(f"{info.api_url}/health", timeout=5).status_code == 200
    record = _record(state)
    assert record["pid"] == info.pid and record["port"] == port and record["database"] == "sqlite"
    assert record["api_url"] == info.api_url and record["started_at"] == info.started_at
    assert (state / "prefect-home" / "prefect.db").is_file()

    now = server.status()
    assert now is not None and now.pid == info.pid and now.healthy
    assert "pnr: starting the Prefect server" in server.logs(lines=20)
    again, started_now = server.ensure_running()
    assert again.pid == info.pid and not started_now
    with pytest.raises(server.ServerError, match=rf"port {port + 1}.*Stop it first"):
        server.start(port=port + 1)

    stopped = server.stop()
    assert stopped is not None and stopped.pid == info.pid
    assert not _alive(info.pid)
    assert not (state / "server.pid").exists()
    assert server.status() is None
    assert server.stop() is None


def test_a_new_server_starts_from_the_shipped_database_template(state: Path, servers: Callable[[int], int]) -> None:
    """No database yet: the server's first start copies pnr's template for the installed Prefect (migrated, block
    types registered, no runs) instead of migrating an empty one; it then records runs like any other."""
    assert server.template_path().is_file(), "run scripts/make_db_template.py after changing Prefect's version"
    info = server.start(port=free_port())
    servers(info.pid)
    assert "new database from the template prefect-" in server.logs(lines=20)
    with httpx.Client(base_url=info.api_url, timeout=10) as client:
        assert client.post("/flow_runs/count", json={}).json() == 0  # the template holds no runs of anyone
        assert client.post("/block_types/filter", json={}).json(), "block types come registered"
        flow = client.post("/flows/", json={"name": "pnr-template-check"}).json()
        run = client.post("/flow_runs/", json={"flow_id": flow["id"], "name": "check"})
        assert run.status_code == 201, run.text
        assert client.post("/flow_runs/count", json={}).json() == 1
    server.stop()
    info = server.start(port=free_port())  # a database that exists is never replaced
    servers(info.pid)
    second_start = server.logs(lines=200).rsplit("--- pnr: starting the Prefect server", 1)[1]
    assert "new database from the template" not in second_start
    server.stop()


def test_reused_across_processes_and_outlives_its_starter(state: Path, servers: Callable[[int], int]) -> None:
    env = {"PNR_SERVER_PORT": str(free_port())}
    # two processes at once: the lock lets exactly one of them start a server, the other one reuses it
    first, second = _python(ENSURE_RUNNING, env), _python(ENSURE_RUNNING, env)
    a, b = _result(first), _result(second)
    pid = servers(int(str(a["pid"])))
    assert a["pid"] == b["pid"]
    assert sorted([bool(a["new"]), bool(b["new"])]) == [False, True]

    # both starters have exited; the server runs on (its own session, not their child any more)
    assert _alive(pid)
    third = _result(_python(ENSURE_RUNNING, env))
    assert third == {"pid": pid, "new": False}
    info = server.start()
    assert info.pid == pid and info.healthy
    server.stop()
    assert not _alive(pid)


def test_crashed_server_is_restarted(state: Path, servers: Callable[[int], int]) -> None:
    port = free_port()
    first = server.start(port=port)
    servers(first.pid)
    _crash(first.pid)
    assert server.status() is None  # pid file still there, process gone

    info, started_now = server.ensure_running()  # back on the port it had: its clients' URL stays valid
    servers(info.pid)
    assert started_now and info.pid != first.pid and info.healthy and info.port == port
    server.stop()


def test_taken_port_is_a_clear_error(state: Path, servers: Callable[[int], int]) -> None:
    import socket

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(server.PortInUseError) as error:
            server.start(port=port, timeout=30)
    message = str(error.value)
    assert f"port {port}" in message and "--port" in message
    assert f"pid {os.getpid()} " in message, "the process holding the port is named"
    assert not (state / "server.pid").exists()
    assert server.status() is None


def test_stale_pid_files(state: Path, servers: Callable[[int], int]) -> None:
    port = free_port()
    # a dead pid
    gone = subprocess.Popen(["true"])
    gone.wait()
    _write_stale_record(state, gone.pid, port)
    assert server.status() is None
    info, started_now = server.ensure_running(port=port)
    servers(info.pid)
    assert started_now and info.pid != gone.pid and info.healthy
    server.stop()

    # the pid of an unrelated live process: never signalled, the record is replaced
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        _write_stale_record(state, sleeper.pid, port)
        assert server.status() is None
        assert server.stop() is None  # removes the stale record, leaves the process alone
        assert sleeper.poll() is None and not (state / "server.pid").exists()

        _write_stale_record(state, sleeper.pid, port)
        info, started_now = server.ensure_running()
        servers(info.pid)
        assert started_now and info.pid != sleeper.pid and info.healthy and info.port == port
        assert _record(state)["pid"] == info.pid
        assert server.stop() is not None
        assert sleeper.poll() is None, "pnr killed a process it did not start"
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------- PostgreSQL


# the `postgres_url` fixture (a real PostgreSQL with pg_trgm) is in tests/conftest.py


FLOW = textwrap.dedent(
    """
    import asyncio, json, time
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def two_tasks() -> str:
        double(1)
        double(2)
        from prefect.runtime import flow_run
        return flow_run.id

    async def task_runs(flow_run_id: str) -> list[dict[str, str]]:
        async with get_client() as client:
            deadline = time.monotonic() + 20  # the task-run recorder writes states in batches
            while True:
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
                )
                found = [
                    {
                        "name": r.name,
                        "state": r.state_type.value if r.state_type else "",
                        "start": r.start_time.timestamp() if r.start_time else None,
                        "end": r.end_time.timestamp() if r.end_time else None,
                    }
                    for r in runs
                ]
                if len(found) >= 2 and all(r["state"] == "COMPLETED" for r in found) or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.25)

    t0 = time.time()
    flow_run_id = two_tasks()
    t1 = time.time()
    print(json.dumps({"t0": t0, "t1": t1, "task_runs": asyncio.run(task_runs(flow_run_id))}))
    """
)


def test_postgres_backed_server_records_task_runs(
    state: Path, servers: Callable[[int], int], postgres_url: str, tmp_path: Path
) -> None:
    info = server.start(port=free_port(), database_url=postgres_url, timeout=120)
    servers(info.pid)
    assert info.healthy and info.database == "postgresql"
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in (state / "server.pid").read_text()
    assert _record(state)["database"] == "postgresql"
    assert server.start().pid == info.pid  # no preference: the running server
    with pytest.raises(server.ServerError, match="Stop it first"):
        server.start(database_url=postgres_url.rsplit("/", 1)[0] + "/another")

    # crashed: restarted only with its database URL given again (the pid file keeps no password)
    _crash(info.pid)
    with pytest.raises(server.ServerError, match="Give that database URL again"):
        server.ensure_running()
    again, started_now = server.ensure_running(database_url=postgres_url, timeout=120)
    servers(again.pid)
    assert started_now and again.database == "postgresql" and again.port == info.port
    info = again

    script = tmp_path / "two_tasks.py"
    script.write_text(FLOW)
    env = {
        **os.environ,
        "PREFECT_API_URL": info.api_url,
        "PREFECT_HOME": str(tmp_path / "client-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    runs = out["task_runs"]
    assert len(runs) == 2 and {r["state"] for r in runs} == {"COMPLETED"}, runs
    assert all(r["name"].startswith("double") for r in runs)
    # the server binds its timestamps as plain UTC datetimes (pnr.backend.server_app): stored as the same instants
    assert all(out["t0"] - 1 <= r["start"] <= r["end"] <= out["t1"] + 1 for r in runs), out
    server.stop()


def test_concurrent_writes_queue_instead_of_failing(state: Path, servers: Callable[[int], int]) -> None:
    """Prefect's SQLite transactions begin DEFERRED: of flow runs created at once, some fail with 503 (the client
    then backs off 2-8 s). pnr's server app begins them IMMEDIATE: every create succeeds at once."""
    import threading

    info = server.start(port=free_port())
    servers(info.pid)
    with httpx.Client(base_url=info.api_url, timeout=60) as client:
        flow = client.post("/flows/", json={"name": "pnr-concurrency-test"}).json()
    codes: list[int | str] = []

    def create() -> None:
        with httpx.Client(base_url=info.api_url, timeout=60) as client:  # raw httpx: no retries to hide a 503
            for _ in range(3):
                try:
                    codes.append(client.post("/flow_runs/", json={"flow_id": flow["id"]}).status_code)
                except httpx.HTTPError as exc:
                    codes.append(type(exc).__name__)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(codes) == 24 and set(codes) == {201}, codes
