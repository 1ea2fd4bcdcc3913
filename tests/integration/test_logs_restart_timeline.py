"""`pnr logs`, `pnr restart` and `pnr up --timeline` against the real Docker engine, through the real CLI (the
session's resident Prefect server and runner).

The stack: a db and three dependents gated on `db_ready`, one per `on_dependency_lost` policy (worker: stop,
api: restart, web: ignore). Each container is a busybox shell that serves HTTP, prints `serving <name>` and then
`tick` every second, and exits at once on SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import _TEST_ONLY_ENV, PNR, ROOT, TEST_IMAGE, free_port, pnr_cli, write_config

from pnr.lifecycle.logs import parse_stamp

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

SVG = "{http://www.w3.org/2000/svg}"
SERVE = (
    "trap 'exit 0' TERM; echo serving $0; httpd -f -p 8080 -h /www & while true; do echo tick; sleep 1 & wait $!; done"
)
POLICIES = {"worker": "stop", "api": "restart", "web": "ignore"}


def _chunk(domain: str, name: str, gate: str = "system_ready", policy: str | None = None) -> dict[str, Any]:
    signal_name = f"{name}_ready"
    body: dict[str, Any] = {
        "name": name,
        "gatekeeper": {gate: {"tv": "Y"}},
        "flowout": {signal_name: {"tv": "Y"}},
        "health_check": {
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
            "name": f"{domain}-{name}",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", SERVE, name],
            "ports": {"8080": str(free_port())},
        },
    }
    if policy:
        body["on_dependency_lost"] = policy
    return body


def _stack(tmp_path: Path, domain: str) -> Path:
    chunks = [_chunk(domain, "db")] + [_chunk(domain, n, "db_ready", p) for n, p in POLICIES.items()]
    return write_config(tmp_path / f"{domain}.json", {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}})


def _state(client: Any, name: str) -> dict[str, Any]:
    state = client.containers.get(name).attrs["State"]
    return {
        "running": state["Running"],
        "started": parse_stamp(state["StartedAt"]),
        "finished": parse_stamp(state["FinishedAt"]) if not state["FinishedAt"].startswith("0001") else None,
    }


def _signals(runtime_dir: Path, domain: str) -> dict[str, str]:
    from pnr.runtime.store import read_state

    state, _ = read_state(runtime_dir, domain)
    return {k: v.tv for k, v in state.items()}


def _until(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"not within {timeout:g}s: {what}")
        time.sleep(0.1)


def _latest_artifact(api_url: str, key: str, timeout: float = 30.0) -> dict[str, Any]:
    """The newest artifact under `key`; the runner answers `pnr up` once every chunk is ready and publishes the
    artifacts right after, so wait for it."""
    end = time.monotonic() + timeout
    with httpx.Client(base_url=api_url, timeout=10) as client:
        while True:
            found = client.post("/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}}).json()
            if found:
                return dict(found[0])
            if time.monotonic() > end:
                pytest.fail(f"no artifact {key} within {timeout:g}s")
            time.sleep(0.5)


def _popen(*args: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen[str], list[str]]:
    """The CLI in the background; its stdout lines collect in the returned list. `sigint_ignored`: started with
    SIGINT ignored (as a non-interactive shell starts a background job; Python then installs no handler of its
    own, and once the test process itself ignored it): Ctrl-C must still reach pnr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen(
        [*PNR, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def _interrupt(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, proc.stderr.read()  # type: ignore[union-attr]


def test_timeline_picture_and_logs_of_a_real_run(tmp_path, runtime_dir, domain_name, docker_client, cleanup):
    cleanup.append(domain_name)
    cfg = _stack(tmp_path, domain_name)
    rdir = str(runtime_dir)
    picture = tmp_path / "timeline.svg"
    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, "--timeline", str(picture))
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"timeline: {picture}" in up.stdout

    # the picture: one row per chunk, the critical path marked (db first, then the dependent ready last)
    root = ET.fromstring(picture.read_text())
    rows = {g.get("data-chunk"): g for g in root.iter(f"{SVG}g") if "row" in (g.get("class") or "").split()}
    assert set(rows) == {"db", "worker", "api", "web"}
    path = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "critical-path").get("data-path", "").split()
    assert len(path) == 2 and path[0] == "db" and path[1] in POLICIES, path
    assert {n for n, g in rows.items() if g.get("data-critical") == "true"} == set(path)
    for name, row in rows.items():
        stages = [r.get("data-stage") for r in row.iter(f"{SVG}rect") if r.get("data-stage")]
        assert stages[0] == "waiting" and stages[-1] == "ready", (name, stages)
        assert row.get("data-phase") == "ready"
    db_ready = float(next(r for r in rows["db"].iter(f"{SVG}rect") if r.get("data-stage") == "ready").get("data-from"))
    for name in POLICIES:  # a dependent started only after db was ready
        bars = {r.get("data-stage"): r for r in rows[name].iter(f"{SVG}rect") if r.get("data-stage")}
        assert float(bars["starting"].get("data-from")) >= db_ready - 0.01

    # the same picture in the run's Prefect artifact, as a markdown image with a data: URI (what the UI draws)
    from pnr.backend import server

    info = server.status()
    assert info is not None
    key = f"pnr-{domain_name}-timeline"
    found = [_latest_artifact(info.api_url, key)]
    image = re.search(
        r"!\[readiness timeline of [^\]]+\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", found[0]["data"]
    )
    assert image, found[0]["data"][:500]
    art = ET.fromstring(base64.b64decode(image.group(1)))
    assert {g.get("data-chunk") for g in art.iter(f"{SVG}g") if g.get("data-chunk")} == set(rows)
    assert "| ★ | **db** |" in found[0]["data"]  # the table is still there

    # logs: compose-like prefixes, aligned; only this domain's containers
    logs = pnr_cli("logs", str(cfg))
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines and all(re.match(r"^(db    |worker|api   |web   ) \| ", line) for line in lines), lines[:10]
    for name in ("db", "worker", "api", "web"):
        assert any(line.startswith(f"{name:<6} | serving {name}") for line in lines)
    assert "\x1b[" not in logs.stdout  # no colours when not on a terminal
    one = pnr_cli("logs", str(cfg), "db", "--tail", "1", "--timestamps")
    assert one.returncode == 0 and re.fullmatch(r"db \| \d{4}-\d\d-\d\dT[\d:.]+Z \S.*\n", one.stdout), one.stdout
    bad = pnr_cli("logs", str(cfg), "db", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    gone = pnr_cli("logs", str(cfg), env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert gone.returncode == 1 and "cannot reach the Docker engine" in gone.stderr, gone.stderr

    # -f: two containers at once, new lines live, Ctrl-C ends it cleanly
    proc, out = _popen("logs", str(cfg), "db", "web", "-f", "--tail", "0", sigint_ignored=True)
    try:
        _until("both containers' ticks", lambda: {ln.split()[0] for ln in out if "tick" in ln} >= {"db", "web"}, 30)
        docker_client.containers.get(f"{domain_name}-db").exec_run(["sh", "-c", "echo live-line > /proc/1/fd/1"])
        _until("a line written now", lambda: any("live-line" in ln for ln in out), 20)
    finally:
        code, err = _interrupt(proc)
    assert code == 0 and "Traceback" not in err, err
    assert not any(ln.startswith(("worker", "api")) for ln in out)

    assert pnr_cli("down", str(cfg), "--runtime-dir", rdir).returncode == 0


def test_a_failed_run_still_gets_its_picture_and_bad_targets_exit_2(tmp_path, runtime_dir, domain_name, cleanup):
    cleanup.append(domain_name)
    db = _chunk(domain_name, "db")
    db["container"]["command"] = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]  # never serves
    db["health_check"]["deadline_seconds"] = 1
    api = _chunk(domain_name, "api", "db_ready")
    cfg = write_config(tmp_path / "fails.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": [db, api]}}})
    bad = pnr_cli("up", str(cfg), "--timeline", str(tmp_path / "t.gif"))
    assert bad.returncode == 2 and "must end in .svg or .png" in bad.stderr
    picture = tmp_path / "failed.svg"
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(runtime_dir), "--timeline", str(picture))
    assert up.returncode == 1, up.stdout + up.stderr
    root = ET.fromstring(picture.read_text())
    rows = {g.get("data-chunk"): g for g in root.iter(f"{SVG}g") if "row" in (g.get("class") or "").split()}
    assert rows["db"].get("data-phase") == "failed" and "failed" in rows["db"].get("class", "")
    assert rows["api"].get("data-phase") == "blocked"
    assert pnr_cli("down", str(cfg), "--runtime-dir", str(runtime_dir)).returncode == 0


def test_restart_regates_dependents_per_policy(tmp_path, runtime_dir, domain_name, docker_client, cleanup):
    cleanup.append(domain_name)
    cfg = _stack(tmp_path, domain_name)
    rdir = str(runtime_dir)
    missing = pnr_cli("restart", str(cfg), "db", "--runtime-dir", rdir)  # nothing is up yet
    assert missing.returncode == 1 and "pnr up" in missing.stderr, missing.stdout + missing.stderr
    unknown = pnr_cli("restart", str(cfg), "nope", "--runtime-dir", rdir)
    assert unknown.returncode == 2 and "no chunk named 'nope'" in unknown.stderr

    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir)
    assert up.returncode == 0, up.stdout + up.stderr
    names = {n: f"{domain_name}-{n}" for n in ("db", *POLICIES)}
    before = {n: _state(docker_client, c) for n, c in names.items()}

    began = time.time()
    res = pnr_cli("restart", str(cfg), "db", "--runtime-dir", rdir, "--timeout", "60")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "restarted: db" in res.stdout and "4 chunks ready again" in res.stdout, res.stdout
    after = {n: _state(docker_client, c) for n, c in names.items()}
    assert all(s["running"] for s in after.values())
    db_back = after["db"]["started"]
    assert db_back > began > before["db"]["started"]
    # stop: stopped while db_ready was N (before db started again), started after db was back
    assert began < after["worker"]["finished"] < db_back < after["worker"]["started"]
    # restart: kept running while db was down, restarted (stop + start) once db was back
    assert db_back < after["api"]["finished"] < after["api"]["started"]
    # ignore: untouched
    assert after["web"]["started"] == before["web"]["started"]
    for name in ("worker", "api", "web"):
        assert f"{name}" in res.stdout
    assert _signals(runtime_dir, domain_name) == {
        "system_ready": "Y",
        "db_ready": "Y",
        "worker_ready": "Y",
        "api_ready": "Y",
        "web_ready": "Y",
    }
    status = json.loads(pnr_cli("status", str(cfg), "--runtime-dir", rdir, "--json").stdout)
    assert {n: c["status"] for n, c in status["chunks"].items()} == dict.fromkeys(names, "completed")

    # with a `pnr up --watch` of the domain running, restart only restarts the container: that watch reacts
    watch, lines = _popen("up", str(cfg), "--runtime-dir", rdir, "--watch", "--watch-seconds", "120")
    try:
        _until("the watch runs", lambda: any("watching" in ln for ln in lines) or watch.poll() is not None, 180)
        assert watch.poll() is None, "".join(lines)
        live = pnr_cli("restart", str(cfg), "db", "--runtime-dir", rdir, "--timeout", "60")
        assert live.returncode == 0, live.stdout + live.stderr
        assert "is live (pid" in live.stdout and "restarted: db" in live.stdout, live.stdout
        reactions = [r"db\s+lost", r"db\s+ready\s+recovered", r"worker\s+waiting\s+stopped", r"api\s+ready\s+ready"]
        _until(
            "the watch reports db lost and recovered, worker stopped and started, api restarted",
            lambda: all(re.search(r, "".join(lines)) for r in reactions),
            30,
        )
    finally:
        code, err = _interrupt(watch)
    assert code == 0, err
    assert _state(docker_client, names["db"])["started"] > db_back
    assert pnr_cli("down", str(cfg), "--runtime-dir", rdir).returncode == 0
