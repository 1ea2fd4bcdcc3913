"""Watch mode (`bring_up(watch=True)`, `pnr up --watch`) against real containers and real Prefect flows.

A db chunk serves with busybox httpd; its listener is killed (`docker exec`) or its container stopped, and
restored; the api chunk that gates on `db_ready` follows its `on_dependency_lost` policy."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import _TEST_ONLY_ENV, PNR, ROOT, TEST_IMAGE, free_port, write_config

from pnr.exceptions import ConfigError
from pnr.lifecycle import RunControl, RunNote, use_control
from pnr.model import parse_domain
from pnr.prefect.flows import bring_up

# a shell as PID 1 that stops at once on SIGTERM, httpd in the background with its pid in /tmp/httpd.pid
SERVE = (
    "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & echo $! > /tmp/httpd.pid; while true; do sleep 1 & wait $!; done"
)
KILL_LISTENER = ["sh", "-c", "kill $(cat /tmp/httpd.pid)"]
RESTORE_LISTENER = ["httpd", "-p", "8080", "-h", "/www"]  # daemonizes: outlives the exec


def _chunk(
    name: str, prefix: str, port: int, *, gate: str = "system_ready", policy: str | None = None
) -> dict[str, Any]:
    signal_name = f"{name}_ready"
    body: dict[str, Any] = {
        "name": name,
        "gatekeeper": {gate: {"prompt": f"is {gate}?", "response": ["yes"], "tv": "Y"}},
        "flowout": {signal_name: {"prompt": f"is {name} ready?", "response": ["yes"], "tv": "Y"}},
        "health_check": {
            # http, not tcp: through Docker's port proxy a refused backend is an unambiguous failed request
            "type": "http",
            "port_key": "8080",
            "path": "/index.html",
            "timeout_seconds": 1,
            "interval_seconds": 0.2,
            "deadline_seconds": 30,
            "status_mapping": {
                "success": {"key": signal_name, "response": ["yes"], "tv": "Y"},
                "failure": {"key": signal_name, "response": ["no"], "tv": "N"},
            },
        },
        "container": {
            "name": prefix + name,
            "image": TEST_IMAGE,
            "command": ["sh", "-c", SERVE],
            "ports": {"8080": str(port)},
        },
    }
    if policy is not None:
        body["on_dependency_lost"] = policy
    return body


def _stack(domain: str, policy: str) -> dict[str, Any]:
    pre = domain + "-"
    return {
        "name": domain,
        "cpuxs": {
            "main": {
                "design_chunks": [
                    _chunk("db", pre, free_port()),
                    _chunk("api", pre, free_port(), gate="db_ready", policy=policy),
                ]
            }
        },
    }


def _signals(runtime_dir: Path, domain: str) -> dict[str, str]:
    from pnr.runtime.store import read_state

    state, _ = read_state(runtime_dir, domain)
    return {k: v.tv for k, v in state.items()}


def _until(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for a condition the watch must bring about (bounded, so a broken watch fails instead of hanging)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"not within {timeout:g}s: {what}")
        time.sleep(0.1)


class _Background:
    """bring_up(watch=True) in a thread; `started` is set when the watch begins."""

    def __init__(self, **kwargs: Any) -> None:
        self.outcome: dict[str, Any] = {}
        self.started = threading.Event()
        self.control = RunControl()  # this run's own: what the CLI's Ctrl-C handler interrupts
        self._unsubscribe = self.control.listen(
            lambda event: self.started.set() if isinstance(event, RunNote) and event.what == "watch.started" else None
        )
        ctx = contextvars.copy_context()
        self.thread = threading.Thread(target=ctx.run, args=(self._run,), kwargs=kwargs, daemon=True)
        self.thread.start()
        if not self.started.wait(120):
            pytest.fail(f"the watch did not start: {self.outcome}")

    def _run(self, **kwargs: Any) -> None:
        try:
            with use_control(self.control):
                self.outcome["result"] = bring_up(watch=True, **kwargs)
        except BaseException as exc:
            self.outcome["error"] = exc

    def join(self, timeout: float = 60) -> dict[str, Any]:
        self.thread.join(timeout)
        self._unsubscribe()
        assert not self.thread.is_alive(), "the watch did not end"
        assert "result" in self.outcome, self.outcome
        return self.outcome["result"]


def _status(client: Any, name: str) -> str:
    return client.api.inspect_container(name)["State"]["Status"]


def _started_at(client: Any, name: str) -> str:
    return client.api.inspect_container(name)["State"]["StartedAt"]


# -- config ------------------------------------------------------------------------------------------------


def test_on_dependency_lost_is_validated_and_defaults_to_the_domain() -> None:
    domain = parse_domain(_stack("cfg", "restart") | {"on_dependency_lost": "stop"})
    db, api = domain.cpuxs["main"].design_chunks
    assert domain.dependency_policy(db) == "stop"  # the domain's default
    assert domain.dependency_policy(api) == "restart"  # the chunk's own setting wins
    assert parse_domain(_stack("cfg", "ignore")).dependency_policy(db) == "ignore"
    with pytest.raises(ConfigError, match=r"design_chunks\[1\]\.on_dependency_lost"):
        parse_domain(_stack("cfg", "reboot"))


# -- against real containers -------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.prefect
def test_stop_policy_stops_the_dependent_and_starts_it_again_when_the_signal_recovers(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    db, api = domain_name + "-db", domain_name + "-api"
    cfg = write_config(tmp_path / "stop.json", _stack(domain_name, "stop"))
    run = _Background(config_path=str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90, watch_seconds=300)
    assert _signals(runtime_dir, domain_name) == {"system_ready": "Y", "db_ready": "Y", "api_ready": "Y"}

    docker_client.containers.get(db).exec_run(KILL_LISTENER)  # db's container runs on, its listener is gone
    _until("db_ready flips to N", lambda: _signals(runtime_dir, domain_name)["db_ready"] == "N")
    _until("api is stopped", lambda: _status(docker_client, api) == "exited")
    _until("api_ready flips to N", lambda: _signals(runtime_dir, domain_name)["api_ready"] == "N")  # cascades
    assert _status(docker_client, db) == "running"

    docker_client.containers.get(db).exec_run(RESTORE_LISTENER)
    _until("db_ready back to Y", lambda: _signals(runtime_dir, domain_name)["db_ready"] == "Y")
    _until(
        "api runs and is ready again",
        lambda: _status(docker_client, api) == "running" and _signals(runtime_dir, domain_name)["api_ready"] == "Y",
    )

    assert run.control.interrupt()  # what the CLI's Ctrl-C handler calls: the watch ends cleanly
    result = run.join()
    watch = result["watch"]
    assert watch["ended"] == "interrupted (Ctrl-C)"
    assert watch["chunks"] == {
        "db": {"state": "ready", "policy": "ignore"},
        "api": {"state": "ready", "policy": "stop"},
    }
    seen = [(e["chunk"], e["what"]) for e in watch["events"]]
    for step in [("db", "lost"), ("api", "stopped"), ("db", "recovered"), ("api", "started"), ("api", "ready")]:
        assert step in seen, seen
    assert (
        seen.index(("db", "lost"))
        < seen.index(("api", "stopped"))
        < seen.index(("db", "recovered"))
        < seen.index(("api", "started"))
    )
    assert result["signals"]["api_ready"]["tv"] == "Y"
    assert _status(docker_client, db) == _status(docker_client, api) == "running"  # left running


@pytest.mark.docker
@pytest.mark.prefect
def test_restart_policy_keeps_the_dependent_running_and_restarts_it_after_recovery(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    db, api = domain_name + "-db", domain_name + "-api"
    cfg = write_config(tmp_path / "restart.json", _stack(domain_name, "restart"))
    run = _Background(config_path=str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90, watch_seconds=300)
    first_start = _started_at(docker_client, api)

    docker_client.containers.get(db).stop(timeout=5)  # the whole db container goes away this time
    _until("db_ready flips to N", lambda: _signals(runtime_dir, domain_name)["db_ready"] == "N")
    _until("api is told it lost db", lambda: _chunk_state(runtime_dir, domain_name, "api")["phase"] == "waiting")
    assert _status(docker_client, api) == "running"  # restart: it keeps serving while db is down
    assert _started_at(docker_client, api) == first_start

    docker_client.containers.get(db).start()
    _until("db_ready back to Y", lambda: _signals(runtime_dir, domain_name)["db_ready"] == "Y")
    _until(
        "api restarted and ready",
        lambda: (
            _started_at(docker_client, api) != first_start
            and _signals(runtime_dir, domain_name)["api_ready"] == "Y"
            and _chunk_state(runtime_dir, domain_name, "api")["phase"] == "ready"
        ),
    )

    assert run.control.interrupt("stopped by the test")
    watch = run.join()["watch"]
    assert watch["ended"] == "stopped by the test"
    seen = [(e["chunk"], e["what"]) for e in watch["events"]]
    assert (
        seen.index(("db", "lost"))
        < seen.index(("api", "dependency-lost"))
        < seen.index(("db", "recovered"))
        < seen.index(("api", "restarted"))
        < seen.index(("api", "ready"))
    ), seen
    assert ("api", "stopped") not in seen


@pytest.mark.docker
@pytest.mark.prefect
def test_ignore_policy_only_logs_and_watch_seconds_ends_the_watch(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    db, api = domain_name + "-db", domain_name + "-api"
    cfg = write_config(tmp_path / "ignore.json", _stack(domain_name, "ignore"))
    run = _Background(config_path=str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90, watch_seconds=15)
    docker_client.containers.get(db).exec_run(KILL_LISTENER)
    _until("db_ready flips to N", lambda: _signals(runtime_dir, domain_name)["db_ready"] == "N")
    result = run.join(90)  # nobody stops it: watch_seconds does
    watch = result["watch"]
    assert watch["ended"] == "watch_seconds (15s) passed"
    seen = [(e["chunk"], e["what"]) for e in watch["events"]]
    assert ("db", "lost") in seen and ("api", "dependency-lost") in seen, seen
    assert _status(docker_client, api) == "running"
    assert result["signals"]["db_ready"]["tv"] == "N" and result["signals"]["api_ready"]["tv"] == "Y"
    assert watch["chunks"]["db"]["state"] == "lost"


def _chunk_state(runtime_dir: Path, domain: str, chunk: str) -> dict[str, Any]:
    import json

    from pnr.runtime import META_DIR

    try:
        return json.loads((runtime_dir / META_DIR / f"{domain}.chunks.json").read_text())["chunks"][chunk]
    except (OSError, ValueError, KeyError):
        return {"phase": None}


@pytest.mark.docker
def test_cli_up_watch_ends_cleanly_on_ctrl_c(tmp_path, runtime_dir, domain_name, docker_client, cleanup):
    cleanup.append(domain_name)
    cfg = write_config(tmp_path / "cli.json", _stack(domain_name, "stop"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
    env["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pnr-watch-prefect-")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [*PNR, "up", str(cfg), "--runtime-dir", str(runtime_dir), "--watch"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        _until(
            "the CLI says it is watching",
            lambda: any("watching" in line for line in lines) or proc.poll() is not None,
            180,
        )
        assert proc.poll() is None, "".join(lines) + proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    text = "".join(lines)
    assert code == 0, text + proc.stderr.read()  # type: ignore[union-attr]
    assert "watch ended: interrupted (Ctrl-C)" in text, text
    assert _status(docker_client, domain_name + "-api") == "running"  # Ctrl-C leaves the domain up


@pytest.mark.docker
@pytest.mark.prefect
def test_cancelling_the_flow_run_ends_the_watch(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    cleanup.append(domain_name)
    cfg = write_config(tmp_path / "cancel.json", _stack(domain_name, "stop"))
    run = _Background(config_path=str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90, watch_seconds=300)
    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs()
            if r.parameters.get("config_path") == str(cfg) and r.parent_task_run_id is None
        ]
        assert len(runs) == 1, runs
        client.set_flow_run_state(runs[0].id, Cancelling(), force=True)
    result = run.join()
    assert result["watch"]["ended"] == "the flow run was cancelled"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(runs[0].id).state
    assert state is not None and state.is_final(), state  # not left hanging in Cancelling
    assert _status(docker_client, domain_name + "-api") == "running"  # the domain stays up, as after Ctrl-C
