"""pnr without root: a user in the `docker` group, created and removed here, runs the resident backend (started by
its own `pnr up`), a chain, `status` and `down`; and the same user brings a chain up through rootless Podman."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PODMAN_DIR, ROOT, TEST_IMAGE, free_port, http_chunk, write_config

grp = pytest.importorskip("grp", reason="users and groups of a POSIX system")
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"  # found on root's PATH: the user's has no sbin

pytestmark = [
    pytest.mark.docker,
    pytest.mark.prefect,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="creates a Linux user with useradd / runuser"),
]


@dataclass
class User:
    name: str
    uid: int
    home: Path
    env: dict[str, str]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
        """`args` as this user (runuser), in its home, with its own environment only."""
        return subprocess.run(
            [RUNUSER, "-u", self.name, "--", *args],
            capture_output=True,
            text=True,
            cwd=self.home,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )

    def pnr(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self.run(sys.executable, "-m", "pnr.cli", *args, env=env)

    def write(self, path: Path, data: dict[str, Any]) -> Path:
        write_config(path, data)
        os.chown(path, self.uid, -1)
        return path

    def pids(self) -> list[int]:
        found = subprocess.run(["pgrep", "-u", str(self.uid)], capture_output=True, text=True)
        return [int(p) for p in found.stdout.split()]


def _open_for_others(paths: list[Path], changed: list[tuple[Path, int]]) -> None:
    """Let any user reach `paths` (o+x on every folder above them, o+rx on them); `changed`: what to restore."""
    for path in paths:
        for folder in [*reversed(path.parents), path]:
            if not folder.is_dir():
                continue
            mode = stat.S_IMODE(folder.stat().st_mode)
            want = mode | stat.S_IXOTH | (stat.S_IROTH if folder == path else 0)
            if want != mode:
                changed.append((folder, mode))
                folder.chmod(want)


@pytest.fixture(scope="module")
def user(docker_client: Any) -> Iterator[User]:
    """A user in the `docker` group with a home of its own; the engine socket group-readable by `docker` as a
    packaged engine sets it; this interpreter and the project reachable. Afterwards: its backend stopped with
    `pnr server stop`, any process left killed by pid, the user removed, every permission restored."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    try:
        grp.getgrnam("docker")
    except KeyError:
        pytest.skip("no `docker` group on this machine (the engine was not installed by a package)")
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the engine is not on a unix socket ({host})")
    sock = Path(host.removeprefix("unix://"))
    name = f"pnrtest-{uuid.uuid4().hex[:8]}"
    saved = sock.stat()
    restore: list[tuple[Path, int]] = []
    uid: int | None = None
    state: Path | None = None
    try:
        subprocess.run(["useradd", "-m", "-G", "docker", name], check=True, capture_output=True)
        uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)
        gid = grp.getgrnam("docker").gr_gid
        if saved.st_gid != gid or stat.S_IMODE(saved.st_mode) & 0o060 != 0o060:
            os.chown(sock, -1, gid)
            sock.chmod(0o660)
        _open_for_others([Path(sys.executable).resolve().parent, Path(sys.prefix), ROOT], restore)
        home = Path(f"~{name}").expanduser()
        state = home / "state"
        env = {
            "HOME": str(home),
            "USER": name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PNR_STATE_DIR": str(state),
            "PNR_SERVER_PORT": str(free_port()),
            "PNR_RUNNERS": "1",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **({"DOCKER_HOST": host} if "DOCKER_HOST" in os.environ else {}),
        }
        yield User(name, uid, home, env)
    finally:
        try:
            if uid is not None:
                _remove_user(name, uid, state)
        finally:
            for folder, mode in reversed(restore):
                folder.chmod(mode)
            if sock.exists():
                os.chown(sock, -1, saved.st_gid)
                sock.chmod(stat.S_IMODE(saved.st_mode))


def _remove_user(name: str, uid: int, state: Path | None) -> None:
    """Stop the user's backend as the user would, kill whatever of its processes is left by pid, remove it."""
    user = User(name, uid, Path(), {})
    if state is not None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [RUNUSER, "-u", name, "--", sys.executable, "-m", "pnr.cli", "server", "stop"],
                capture_output=True,
                env={"HOME": str(state.parent), "PNR_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"},
                timeout=120,
            )
    for pid in user.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not user.pids():
            break
        time.sleep(0.1)
    subprocess.run(["userdel", "-r", name], capture_output=True)
    for left in (f"/tmp/podman-run-{uid}", f"/tmp/containers-user-{uid}"):
        shutil.rmtree(left, ignore_errors=True)


def _chain(domain: str, *, image: str = TEST_IMAGE) -> dict[str, Any]:
    pre = domain + "-"
    chunks = [
        http_chunk("db", free_port(), prefix=pre, delay=0.5),
        http_chunk("api", free_port(), prefix=pre, gate={"db_ready": "Y"}, check="http"),
    ]
    for chunk in chunks:
        chunk["container"]["image"] = image
        chunk["container"]["init"] = True  # stops at once on SIGTERM
    return {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}}


def _ok(proc: Any) -> str:
    text: str = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    return text


def test_a_user_in_the_docker_group_runs_backend_chain_status_and_down(user, domain_name, docker_client, cleanup):
    cleanup.append(domain_name)
    cfg = user.write(user.home / "chain.json", _chain(domain_name))

    up = _ok(user.pnr("up", str(cfg)))
    assert "started pnr's Prefect server" in up and "2 chunks completed" in up, up
    # the resident backend runs as the user, from the user's state folder
    owned = subprocess.run(["ps", "-ww", "-o", "args=", "-u", str(user.uid)], capture_output=True, text=True).stdout
    assert owned.count(sys.executable) >= 2, owned  # the server and the runner
    assert _ok(user.pnr("server", "status"))
    assert (user.home / "state").stat().st_uid == user.uid

    status = user.pnr("status", str(cfg), "--json")
    _ok(status)
    assert {c["status"] for c in json.loads(status.stdout)["chunks"].values()} == {"completed"}, status.stdout

    down = _ok(user.pnr("down", str(cfg)))
    assert f"removed container {domain_name}-api" in down, down
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})


@pytest.fixture
def rootless_podman(user: User, podman_host: str, docker_client: Any) -> Iterator[Any]:
    """`podman system service` run by the user (rootless, its own storage) on a socket in its home, the test image
    loaded into that storage; stopped by its process group afterwards. Yields a docker-py client of it.
    Rootless networking (slirp4netns) opens /dev/net/tun, which distributions leave open to all (0666): where
    the machine keeps it root-only, it is opened for the test and put back."""
    tun = Path("/dev/net/tun")
    tun_mode = stat.S_IMODE(tun.stat().st_mode) if tun.exists() else None
    sock = user.home / "podman.sock"
    env = {"CONTAINERS_CONF": str(PODMAN_DIR / "containers.conf")}  # rlimits the machine allows
    service: subprocess.Popen[bytes] | None = None
    try:
        if tun_mode is not None and tun_mode & 0o006 != 0o006:
            tun.chmod(0o666)
        archive = user.home / "image.tar"
        with archive.open("wb") as out:
            for chunk in docker_client.images.get(TEST_IMAGE).save(named=True):
                out.write(chunk)
        os.chown(archive, user.uid, -1)
        loaded = user.run("podman", "load", "-q", "-i", str(archive), env=env)
        if loaded.returncode != 0:
            pytest.fail(f"rootless podman cannot load an image as {user.name}: {loaded.stderr.strip()}")
        service = subprocess.Popen(
            [RUNUSER, "-u", user.name, "--", "podman", "system", "service", "--time=0", f"unix://{sock}"],
            cwd=user.home,
            env={**user.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        client = _wait_for_client(f"unix://{sock}", service)
        yield client
    finally:
        try:
            if service is not None:
                _stop_group(service)
        finally:
            if tun_mode is not None:
                tun.chmod(tun_mode)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group of `process`, SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_for_client(url: str, service: subprocess.Popen[bytes]) -> Any:
    import docker

    problem: Exception | None = None
    for _ in range(100):
        if service.poll() is not None:
            pytest.fail(f"rootless podman service ended: {service.stderr.read().decode() if service.stderr else ''}")
        try:
            client = docker.DockerClient(base_url=url, timeout=30)
            client.ping()
            return client
        except Exception as exc:
            problem = exc
            time.sleep(0.1)
    pytest.fail(f"rootless podman service did not answer on {url} within 10 s: {problem}")


def test_the_user_brings_a_chain_up_and_down_through_rootless_podman(user, rootless_podman, domain_name):
    api = rootless_podman.api
    security = api.get(f"{api.base_url}/v4.0.0/libpod/info").json()["host"]["security"]  # Podman's own API
    assert security["rootless"] is True, security
    cfg = user.write(user.home / "rootless.json", _chain(domain_name))
    env = {"DOCKER_HOST": f"unix://{user.home / 'podman.sock'}", "CONTAINERS_CONF": str(PODMAN_DIR / "containers.conf")}
    try:
        up = _ok(user.pnr("up", str(cfg), env=env))
        assert "2 chunks completed" in up, up
        running = rootless_podman.containers.list(filters={"label": f"io.pnr.domain={domain_name}"})
        assert sorted(c.name for c in running) == [f"{domain_name}-api", f"{domain_name}-db"]
        status = user.pnr("status", str(cfg), "--json", env=env)
        assert {c["status"] for c in json.loads(status.stdout)["chunks"].values()} == {"completed"}, status.stdout
        _ok(user.pnr("down", str(cfg), env=env))
        assert not rootless_podman.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})
    finally:
        for c in rootless_podman.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"}):
            c.remove(force=True)
