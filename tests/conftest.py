"""Two layers: unit tests (no daemon) and integration tests against the real Docker engine and real
Prefect (`prefect_test_harness`), marked `docker` / `prefect`. Everything integration tests create carries
pnr's labels with a unique domain name and is removed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")

# logging settings above are for the in-process flows of the tests; the CLI must be judged on its own defaults
_TEST_ONLY_ENV = ("PREFECT_LOGGING_", "PREFECT_SERVER_LOGGING_")
ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "pnr-test/busybox:1"
PNR = [sys.executable, "-m", "pnr.cli"]


def _engine_available() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get(TEST_IMAGE)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def docker_client() -> Any:
    problem = _engine_available()
    if problem:
        message = f"no usable Docker engine / test image ({problem}); run scripts/setup.sh"
        if os.environ.get("PNR_REQUIRE_DOCKER") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import docker

    return docker.from_env()


@pytest.fixture(scope="session", autouse=True)
def pnr_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pnr's resident Prefect server and runner of this test session: their own state dir and port (never the
    user's), started by the first `pnr up` that needs them, stopped by their pids at the end, also on failure."""
    state = tmp_path_factory.mktemp("pnr-state")
    saved = {k: os.environ.get(k) for k in ("PNR_STATE_DIR", "PNR_SERVER_PORT", "PNR_RUNNERS")}
    os.environ["PNR_STATE_DIR"] = str(state)
    os.environ["PNR_SERVER_PORT"] = str(free_port())
    os.environ["PNR_RUNNERS"] = "2"  # a pool of two, whatever the machine's core count
    try:
        yield state
    finally:
        from pnr.backend import runner, server

        runner.stop_runner(state)
        server.stop(state_dir=state)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


SECOND_ENGINE_HOST = "tcp://127.0.0.2:2375"  # scripts/second_engine.sh; its published ports are on 127.0.0.2


def second_engine_ctl(action: str) -> subprocess.CompletedProcess[str]:
    """scripts/second_engine.sh start|stop|purge|status."""
    script = ROOT / "scripts" / "second_engine.sh"
    return subprocess.run(["bash", str(script), action], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="session")
def second_engine(docker_client: Any) -> Iterator[str]:
    """A second real dockerd on this machine (its own bridge, data root and socket; tcp://127.0.0.2:2375; the test
    image copied in), started when a test asks for it and stopped by its pid file at the end of the session, even
    after failures, its data deleted. Yields its host URL. A test that stops it starts it again
    (`second_engine_ctl`)."""
    try:
        started = second_engine_ctl("start")
        if started.returncode != 0:
            message = f"no second Docker engine: {(started.stderr or started.stdout).strip()}"
            if os.environ.get("PNR_REQUIRE_DOCKER") or os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        yield SECOND_ENGINE_HOST
    finally:
        second_engine_ctl("purge")


PG_DIR = Path("/var/tmp/pnr-pg-test")  # not under /tmp/pytest-of-*: the postgres user must reach it
ENSURE_POSTGRES = ROOT / "scripts" / "ensure_postgres.sh"


def _running_cluster_port() -> int | None:
    """The port of the test cluster if it already runs (then this session must not stop it)."""
    try:
        lines = (PG_DIR / "data" / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (with pg_trgm) for Prefect servers (scripts/ensure_postgres.sh): its asyncpg URL. Shared by
    test_server.py and test_scale_out.py; stopped at the end of the session if this session started it."""
    port = _running_cluster_port()
    started = port is None
    env = {**os.environ, "PNR_PG_DIR": str(PG_DIR), "PNR_PG_PORT": str(port or free_port())}
    done = subprocess.run([str(ENSURE_POSTGRES)], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        message = f"scripts/ensure_postgres.sh failed:\n{done.stderr[-3000:]}"
        if os.environ.get("CI") or os.environ.get("PNR_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield done.stdout.strip().splitlines()[-1]
    finally:
        if started:
            subprocess.run([str(ENSURE_POSTGRES), "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def domain_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runtime"
    path.mkdir()
    return path


@pytest.fixture
def cleanup(docker_client: Any) -> Iterator[list[str]]:
    """Domains registered here are torn down by label after the test (containers, then networks)."""
    domains: list[str] = []
    yield domains
    for domain in domains:
        label = f"io.pnr.domain={domain}"
        for c in docker_client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
        for n in docker_client.networks.list(filters={"label": label}):
            n.remove()


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


def pnr_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PNR, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}, **(env or {})},
    )


def http_chunk(
    name: str,
    port: int,
    *,
    gate: dict[str, str] | None = None,
    delay: float = 0.0,
    out: str | None = None,
    check: str = "tcp",
    deadline: float = 20,
    interval: float = 0.1,
    command: list[str] | None = None,
    container_port: int = 8080,
    prefix: str = "",
) -> dict[str, Any]:
    """A busybox httpd chunk that starts listening `delay` seconds after it starts."""
    signal = out or f"{name}_ready"
    cmd = command or ["sh", "-c", f"sleep {delay}; exec httpd -f -p {container_port} -h /www"]
    health: dict[str, Any] = {
        "type": check,
        "port_key": str(container_port),
        "timeout_seconds": 1,
        "interval_seconds": interval,
        "deadline_seconds": deadline,
        "status_mapping": {
            "success": {"key": signal, "response": ["yes"], "tv": "Y"},
            "failure": {"key": signal, "response": ["no"], "tv": "N"},
        },
    }
    if check == "http":
        health["path"] = "/index.html"
    return {
        "name": name,
        "gatekeeper": {
            s: {"prompt": f"is {s}?", "response": ["yes"], "tv": tv}
            for s, tv in (gate or {"system_ready": "Y"}).items()
        },
        "flowout": {signal: {"prompt": f"is {name} ready?", "response": ["yes"], "tv": "Y"}},
        "health_check": health,
        "container": {
            "name": f"{prefix}{name}",
            "image": TEST_IMAGE,
            "command": cmd,
            "ports": {str(container_port): str(port)},
        },
    }


def free_port() -> int:
    """A free host port for a test container, never handed out before in this session: the benchmark's
    (bench/stacks.py), which picks it below the kernel's ephemeral range."""
    return _bench_stacks().free_port()


def _bench_stacks() -> Any:
    if str(ROOT / "bench") not in sys.path:
        sys.path.append(str(ROOT / "bench"))
    import stacks

    return stacks


@pytest.fixture(scope="session")
def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        message = "docker-compose (1.29.2, Debian's package) is not installed: apt-get install docker-compose"
        if os.environ.get("PNR_REQUIRE_DOCKER") or os.environ.get("CI"):
            pytest.fail(message)  # scripts/setup.sh installs it: the parity acceptance must not skip in CI
        pytest.skip(message)
    return path


ENSURE_PODMAN = ROOT / "scripts" / "ensure_podman.sh"
# the Podman service's folder (socket, pid, containers.conf): this session's own, outside the root-only tmp_path
# so that a test user can read containers.conf
PODMAN_DIR = Path(os.environ.get("PNR_PODMAN_DIR") or f"/var/tmp/pnr-podman-{os.getpid()}")


def _require_or_skip(message: str) -> None:
    """A missing part is a failure where the suite must be complete (CI, scripts/test.sh), else a skip."""
    if os.environ.get("PNR_REQUIRE_DOCKER") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def podman_host(docker_client: Any) -> Iterator[str]:
    """Podman's Docker-compatible API (rootful `podman system service` on a unix socket of its own, started by
    scripts/ensure_podman.sh with the test images loaded), stopped by its recorded pid at the end of the session,
    also after failures, its folder removed. Yields its DOCKER_HOST URL."""
    if os.geteuid() != 0:
        pytest.skip("the Podman tests start rootful podman: run them as root")
    env = {**os.environ, "PNR_PODMAN_DIR": str(PODMAN_DIR)}
    try:
        started = subprocess.run(["bash", str(ENSURE_PODMAN)], env=env, capture_output=True, text=True, timeout=600)
        if started.returncode != 0:
            _require_or_skip(f"no Podman service: {(started.stderr or started.stdout).strip()}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(ENSURE_PODMAN), "stop"], env=env, capture_output=True, timeout=60)
        if not os.environ.get("PNR_PODMAN_DIR"):
            shutil.rmtree(PODMAN_DIR, ignore_errors=True)
