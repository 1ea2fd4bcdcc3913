"""Interrupted runs and engine faults, through the `pnr` command against the real engine and real Prefect.

Kill points are chosen from the progress lines `pnr up` prints on stdout; after each SIGKILL the next `pnr up`
must converge (one container per chunk, dependents started only after their producer is ready *again*) and
`pnr down` must succeed from whatever state was left, twice in a row."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import _TEST_ONLY_ENV, PNR, ROOT, TEST_IMAGE, free_port, http_chunk, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]

DB_DELAY, API_DELAY = 2.0, 1.0


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pnr's resident server and runner run before the first `pnr up` here: they are meant to outlive it, so
    they must not count among what a killed `pnr up` leaves behind."""
    from pnr.backend import runner, server

    info = server.ensure_running()[0]
    runner.ensure_runner(info.state_dir, info.api_url)
    return {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}


def _chain(tmp_path: Path, domain: str) -> Path:
    """db (listens after 2 s) → api (after 1 s, gated on db_ready) → web (gated on api_ready and external `go`)."""
    pre = domain + "-"
    chunks = [
        http_chunk("db", free_port(), prefix=pre, delay=DB_DELAY),
        http_chunk("api", free_port(), prefix=pre, delay=API_DELAY, gate={"db_ready": "Y"}),
        http_chunk("web", free_port(), prefix=pre, gate={"api_ready": "Y", "go": "Y"}),
    ]
    return write_config(tmp_path / f"{domain}.json", {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}})


class UpProcess:
    """`pnr up` as a child process whose stdout lines are read as they come."""

    def __init__(self, *args: str, env: dict[str, str], tmp_path: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
        full_env.update(env, PYTHONUNBUFFERED="1")
        self.stderr_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in wait()/reap()
        self.proc = subprocess.Popen(
            [*PNR, "up", *args], stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=ROOT, env=full_env
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.descendants: set[int] = set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def wait_line(self, pattern: str, timeout: float = 120) -> str:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not self._new.wait(0.5):
                    raise AssertionError(f"pnr up exited ({self.proc.returncode}) before {pattern!r}:\n" + self.text())
                if time.monotonic() > end:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + self.text())
                self._new.wait(0.2)

    def _children(self, pid: int) -> set[int]:
        found: set[int] = set()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids = {int(x) for x in (task / "children").read_text().split()}
            except OSError:
                continue
            for kid in kids:
                found |= {kid} | self._children(kid)
        return found

    def send(self, sig: int) -> None:
        self.descendants |= self._children(self.proc.pid)  # the temporary Prefect server among them
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 180) -> int:
        code = self.proc.wait(timeout)
        self._stderr.close()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr()

    def leftover_descendants(self, within: float = 20) -> set[int]:
        """Children of this `pnr up` still alive after `within` s — except pnr's resident server and runner, which
        a `pnr up` starts on purpose when they are not running (or run other code) and leaves for the next one."""
        end = time.monotonic() + within
        alive = set(self.descendants) - _resident_pids()
        while alive and time.monotonic() < end:
            alive = {p for p in alive if _alive(p)}
            time.sleep(0.2)
        return alive

    def reap(self) -> None:
        """Test cleanup: end what this test started (by pid) if a failed assertion left it running."""
        for pid in [self.proc.pid, *self.descendants]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        self._stderr.close()


def _resident_pids() -> set[int]:
    from pnr.backend import runner, server

    pids: set[int] = set()
    info = server.status()
    if info is not None:
        pids.add(info.pid)
        pids.update(int(pong["pid"]) for pong in runner.pool_status(info.state_dir))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _started_at(client: Any, name: str) -> float:
    raw = client.api.inspect_container(name)["State"]["StartedAt"]
    head, frac = raw.rstrip("Z").split(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + frac[:6])


def _owned(client: Any, domain: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"})


def _runs_ended(timeout: float = 60) -> None:
    """Wait until the resident runner has ended the killed client's run: it notices the closed connection,
    interrupts the run and cleans up (a container being created may be removed). Only then is the state the
    one the next command finds; the suite runs serially, so no other run is active."""
    from pnr.backend import runner, server

    info = server.status()
    assert info is not None
    deadline = time.monotonic() + timeout
    while any(int(p.get("active") or 0) for p in runner.pool_status(info.state_dir)):
        assert time.monotonic() < deadline, runner.pool_status(info.state_dir)
        time.sleep(0.1)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def _down_twice(cfg: Path, rdir: str, domain: str, client: Any, env: dict[str, str]) -> None:
    for attempt in (1, 2):
        down = pnr_cli("down", str(cfg), "--runtime-dir", rdir, env=env)
        assert down.returncode == 0, f"down #{attempt}: {down.stdout}{down.stderr}"
        _no_traceback(down.stdout + down.stderr)
    assert "down: " + domain + ": 0 container(s), 0 network(s) removed" in down.stdout
    assert not _owned(client, domain)
    assert not client.networks.list(filters={"label": f"io.pnr.domain={domain}"})
    assert not (Path(rdir) / f"{domain}.pnr.json").exists()


# Each kill point: a stdout line pattern, then how long to wait before SIGKILL.
KILL_POINTS = {
    "before-any-chunk": (r"^pnr up ", 0.0),  # Prefect server starting / prepare running
    "db-starting": (r"\bdb\s+starting\b", 0.0),  # the first container is being created
    "db-probing": (r"\bdb\s+probing\b", 0.3),  # first container started, not listening yet
    "api-probing": (r"\bapi\s+probing\b", 0.2),  # db ready, its dependent started
    "web-waiting-on-gate": (r"\bapi\s+ready\b", 0.5),  # web waits on the external signal `go`
}


def _kill_at(point: str, cfg: Path, rdir: str, env: dict[str, str], tmp_path: Path) -> UpProcess:
    pattern, pause = KILL_POINTS[point]
    up = UpProcess(str(cfg), "--runtime-dir", rdir, "--timeout", "120", env=env, tmp_path=tmp_path)
    try:
        up.wait_line(pattern)
        time.sleep(pause)
        up.send(signal.SIGKILL)
        assert up.wait(30) == -signal.SIGKILL
    except BaseException:
        up.reap()
        raise
    return up


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_up_converges_and_down_twice(point, tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    cfg = _chain(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    killed = _kill_at(point, cfg, rdir, prefect_home, tmp_path)
    try:
        # nothing of this `pnr up` is left running (the resident server and runner were there before it)
        assert not killed.leftover_descendants(), f"left running after SIGKILL: {killed.descendants}"
    finally:
        killed.reap()
    _runs_ended()
    before = {c.name: c.id for c in _owned(docker_client, domain_name) if c.status == "running"}

    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir, env=prefect_home)
    assert status.returncode == 0, status.stdout + status.stderr
    chunks = json.loads(status.stdout)["chunks"]
    assert "waiting" not in {c["status"] for c in chunks.values()}, chunks  # nobody waits: that process is dead

    assert pnr_cli("signal", "set", str(cfg), "go", "--tv", "Y", "--runtime-dir", rdir).returncode == 0
    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, "--timeout", "120", env=prefect_home)
    assert up.returncode == 0, up.stdout + up.stderr
    _no_traceback(up.stdout + up.stderr)
    containers = _owned(docker_client, domain_name)
    names = sorted(c.name for c in containers)
    assert names == sorted(f"{domain_name}-{n}" for n in ("api", "db", "web")), names  # no duplicates, none missing
    assert all(c.status == "running" for c in containers)
    for name, cid in before.items():  # what was running and unchanged is reused, not duplicated or recreated
        assert docker_client.containers.get(name).id == cid, f"{name} was recreated"
    # no stale truth: a dependent started only once its producer's current container was listening
    db, api, web = (_started_at(docker_client, f"{domain_name}-{n}") for n in ("db", "api", "web"))
    assert api >= db + DB_DELAY - 0.25, (db, api)
    assert web >= api + API_DELAY - 0.25, (api, web)
    _down_twice(cfg, rdir, domain_name, docker_client, prefect_home)


@pytest.mark.parametrize("point", ["db-probing"])
def test_sigkill_with_a_throw_away_server_leaves_no_server_running(point, tmp_path, domain_name, cleanup, prefect_home):
    """`--ephemeral-server`: Prefect's temporary server dies with pnr instead of being left running for ever."""
    cleanup.append(domain_name)
    cfg = _chain(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    env = {**prefect_home, "PNR_EPHEMERAL_SERVER": "1"}
    killed = _kill_at(point, cfg, rdir, env, tmp_path)
    try:
        assert killed.descendants, "the throw-away server should have been a child of pnr up"
        assert not killed.leftover_descendants(), f"left running after SIGKILL: {killed.descendants}"
    finally:
        killed.reap()
    _down_twice(cfg, rdir, domain_name, _client(), prefect_home)


def _client() -> Any:
    import docker

    return docker.from_env()


@pytest.mark.parametrize("point", ["db-starting", "db-probing", "web-waiting-on-gate"])
def test_down_twice_straight_after_sigkill(point, tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    cfg = _chain(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    _kill_at(point, cfg, rdir, prefect_home, tmp_path).reap()
    _down_twice(cfg, rdir, domain_name, docker_client, prefect_home)


def test_ctrl_c_stops_cleanly_and_says_what_is_left(tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    cfg = _chain(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    up = UpProcess(str(cfg), "--runtime-dir", rdir, "--timeout", "120", env=prefect_home, tmp_path=tmp_path)
    try:
        up.wait_line(r"\bapi\s+probing\b")
        up.send(signal.SIGINT)
        code = up.wait(60)
    finally:
        up.reap()
    text = up.text()
    assert code == 130, text
    _no_traceback(text)
    assert "interrupted" in up.stderr() and f"pnr down {cfg}" in up.stderr(), text
    left = [c.name for c in _owned(docker_client, domain_name)]
    assert f"{domain_name}-db" in left
    for name in left:  # every container left behind is named in the table pnr printed
        assert name in "\n".join(up.lines), (name, text)
    _down_twice(cfg, rdir, domain_name, docker_client, prefect_home)


# -- engine faults -----------------------------------------------------------------------------------------

UNREACHABLE = {"DOCKER_HOST": "tcp://127.0.0.1:1"}


def test_engine_unreachable_for_up_status_down(tmp_path, domain_name, prefect_home):
    cfg = _chain(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    env = {**prefect_home, **UNREACHABLE}
    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=env)
    assert up.returncode == 1, up.stdout + up.stderr
    _no_traceback(up.stdout + up.stderr)
    assert "cannot reach the Docker engine" in up.stderr and "DOCKER_HOST=tcp://127.0.0.1:1" in up.stderr
    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir, env=env)
    assert status.returncode == 0, status.stderr
    _no_traceback(status.stdout + status.stderr)
    assert "cannot reach the Docker engine" in status.stderr and "showing runtime files only" in status.stderr
    assert json.loads(status.stdout)["engine"] is False
    down = pnr_cli("down", str(cfg), "--runtime-dir", rdir, env=env)
    assert down.returncode == 1
    _no_traceback(down.stdout + down.stderr)
    assert "cannot reach the Docker engine" in down.stderr


def test_image_missing_and_not_buildable(tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    ctx = tmp_path / "broken"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN exit 7\n")
    good = http_chunk("db", free_port(), prefix=domain_name + "-")
    bad = http_chunk("api", free_port(), prefix=domain_name + "-", gate={"db_ready": "Y"})
    bad["container"].pop("image")
    bad["container"]["build_path"] = "broken"
    cfg = write_config(tmp_path / "c.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": [good, bad]}}})
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=prefect_home)
    assert up.returncode == 1, up.stdout + up.stderr
    _no_traceback(up.stdout + up.stderr)
    assert "chunk api: building" in up.stderr and "failed" in up.stderr, up.stderr
    assert not _owned(docker_client, domain_name)  # not even the chunk whose image was fine
    assert not docker_client.networks.list(filters={"label": f"io.pnr.domain={domain_name}"})


@pytest.mark.parametrize("holder", ["host-socket", "foreign-container"])
def test_host_port_taken_is_named_before_anything_starts(
    holder, tmp_path, domain_name, docker_client, cleanup, prefect_home
):
    cleanup.append(domain_name)
    port = free_port()
    sock = None
    foreign = None
    if holder == "host-socket":
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen()
    else:  # a container pnr did not create holds it (labelled only so the cleanup fixture finds it)
        foreign = docker_client.containers.run(
            TEST_IMAGE,
            ["sleep", "300"],
            detach=True,
            name=f"{domain_name}-foreign",
            ports={"9000/tcp": ("127.0.0.1", port)},
            labels={"io.pnr.domain": domain_name},
        )
    try:
        pre = domain_name + "-"
        chunks = [
            http_chunk("db", free_port(), prefix=pre),
            http_chunk("api", port, prefix=pre, gate={"db_ready": "Y"}),
        ]
        cfg = write_config(tmp_path / "c.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": chunks}}})
        up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=prefect_home)
        assert up.returncode == 1, up.stdout + up.stderr
        _no_traceback(up.stdout + up.stderr)
        assert f"chunk api: host port 127.0.0.1:{port}/tcp" in up.stderr and "already in use" in up.stderr, up.stderr
        assert [c.name for c in _owned(docker_client, domain_name)] == ([] if foreign is None else [foreign.name])
        assert not docker_client.networks.list(filters={"label": f"io.pnr.domain={domain_name}"})
    finally:
        if sock is not None:
            sock.close()


def test_start_time_port_clash_is_translated_and_leaves_nothing(tmp_path, domain_name, docker_client, cleanup):
    """The engine's own refusal (a remote engine gets no pre-check) still names the chunk and the port."""
    from pnr.engines.engine import Engine
    from pnr.exceptions import EngineError
    from pnr.model import DesignChunk

    cleanup.append(domain_name)
    port = free_port()
    engine = Engine()
    chunk = DesignChunk.model_validate(http_chunk("db", port, prefix=domain_name + "-"))
    image = engine.ensure_image(domain_name, chunk, tmp_path)
    network = engine.ensure_network(domain_name)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(EngineError) as info:
            engine.create_and_start(
                domain=domain_name,
                cpux="main",
                chunk=chunk,
                image_id=image,
                config_hash="x",
                flow_run_id="t",
                network=network,
                base_dir=tmp_path,
                env={},
            )
    assert f"chunk db: a host port of container {domain_name}-db is already in use (127.0.0.1:{port})" in str(
        info.value
    )
    assert not _owned(docker_client, domain_name)


def test_container_crashing_during_bring_up(tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    db = http_chunk("db", free_port(), prefix=pre, command=["sh", "-c", "echo crash-marker-41 >&2; sleep 0.5; exit 3"])
    api = http_chunk("api", free_port(), prefix=pre, gate={"db_ready": "Y"})
    cfg = write_config(tmp_path / "c.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": [db, api]}}})
    rdir = str(tmp_path / "rt")
    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=prefect_home)
    assert up.returncode == 1, up.stdout + up.stderr
    _no_traceback(up.stdout + up.stderr)
    assert "exited with code 3" in up.stderr and "crash-marker-41" in up.stderr, up.stderr
    assert "wrote db_ready=N" in up.stderr
    status = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir).stdout)
    assert status["signals"]["db_ready"]["tv"] == "N"  # the failure mapping
    assert status["chunks"]["db"]["status"] == "failed"
    assert status["chunks"]["api"]["container"] is None  # its dependent never started


def _db_and_api_up(tmp_path: Path, domain_name: str, prefect_home: dict[str, str]) -> tuple[Path, str, str]:
    """db, and api gated on db_ready, brought up through the CLI: (config, runtime folder, container prefix)."""
    pre = domain_name + "-"
    chunks = [
        http_chunk("db", free_port(), prefix=pre),
        http_chunk("api", free_port(), prefix=pre, gate={"db_ready": "Y"}),
    ]
    cfg = write_config(tmp_path / "c.json", {"name": domain_name, "cpuxs": {"main": {"design_chunks": chunks}}})
    rdir = str(tmp_path / "rt")
    assert pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=prefect_home).returncode == 0
    return cfg, rdir, pre


def test_container_removed_by_hand_shows_in_status_and_up_restores_it(
    tmp_path, domain_name, docker_client, cleanup, prefect_home
):
    cleanup.append(domain_name)
    cfg, rdir, pre = _db_and_api_up(tmp_path, domain_name, prefect_home)
    db_id = docker_client.containers.get(f"{pre}db").id
    docker_client.containers.get(f"{pre}api").remove(force=True)

    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir)
    assert status.returncode == 0
    chunks_now = json.loads(status.stdout)["chunks"]
    assert chunks_now["db"]["status"] == "completed"
    assert chunks_now["api"]["status"] != "completed" and chunks_now["api"]["container"] is None
    assert "gone" in (chunks_now["api"]["detail"] or ""), chunks_now["api"]
    assert json.loads(status.stdout)["stale"] == {"api_ready": "api's container is gone"}
    text = pnr_cli("status", str(cfg), "--runtime-dir", rdir)
    assert "gone" in text.stdout and "Traceback" not in text.stdout + text.stderr

    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=prefect_home)
    assert up.returncode == 0, up.stdout + up.stderr
    assert re.search(r"\bapi\s+probing\s+\S+ created", up.stdout), up.stdout
    assert docker_client.containers.get(f"{pre}db").id == db_id  # reused
    assert docker_client.containers.get(f"{pre}api").status == "running"
    after = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir).stdout)["chunks"]
    assert {c["status"] for c in after.values()} == {"completed"}


def test_a_container_stopped_by_hand_shows_in_status_with_its_signals_marked_stale(
    tmp_path, domain_name, docker_client, cleanup, prefect_home
):
    cleanup.append(domain_name)
    cfg, rdir, pre = _db_and_api_up(tmp_path, domain_name, prefect_home)
    docker_client.containers.get(f"{pre}db").kill()

    data = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir).stdout)
    assert data["chunks"]["db"]["status"] == "stopped" and data["chunks"]["api"]["status"] == "completed"
    assert f"container {pre}db is exited" in data["chunks"]["db"]["detail"], data["chunks"]["db"]
    assert data["signals"]["db_ready"]["tv"] == "Y"  # the value stands: only a watch or the next up changes it
    assert data["stale"] == {"db_ready": "db stopped since it wrote it"}
    text = pnr_cli("status", str(cfg), "--runtime-dir", rdir).stdout
    assert "may be stale" in text, text
