"""A resident Prefect server that pnr starts, finds again and stops.

One server per pnr state dir; every pnr process on the machine that uses the same state dir shares it:

    $PNR_STATE_DIR, else $XDG_STATE_HOME/pnr, else ~/.local/state/pnr
    ├── prefect-home/   PREFECT_HOME of the server: its SQLite database, memo store, UI files
    ├── server.pid      JSON record of the running server: pid, host, port, api_url, database, started_at, ...
    ├── server.log      the server's stdout and stderr (appended; moved to server.log.1 past 10 MB)
    └── server.lock     file lock: one start or stop at a time, so two `pnr up`s never start two servers

The server runs as `python -m uvicorn ... pnr.backend.server_app:create_app` (Prefect's app, as `prefect server
start --background` runs it, without the CLI's own imports; SQLite writes queue instead of failing, see
server_app), detached (pnr.backend.daemon): it outlives the shell and the pnr process that started it. A pid in
the record is trusted only while that process, started at the recorded time, still runs a Prefect server on
the recorded port, so a stale record whose pid now belongs to another program never gets that program killed.

This module imports only the standard library: `import prefect` costs over a second, and the CLI
calls this module before it knows whether Prefect is needed in-process at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pnr import processes
from pnr.backend import daemon
from pnr.exceptions import PnrError
from pnr.locks import file_lock
from pnr.settings import get_settings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_START_TIMEOUT",
    "SERVER_TUNING",
    "PortInUseError",
    "ServerConfig",
    "ServerError",
    "ServerInfo",
    "default_state_dir",
    "ensure_running",
    "logs",
    "start",
    "status",
    "stop",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
DEFAULT_START_TIMEOUT = 90.0  # a new SQLite database takes ~10-12 s (all migrations); leave room for a busy machine

# Set in the server's environment unless the user's environment sets them already. Measured (docs/server.md):
# batching the task-run recorder cuts the lag until a 200-task burst shows in the API from ~7 s to ~0.3 s.
# Every Prefect service runs (schedules, late runs, automations are pnr features); SERVICE_LOOPS only stretches
# the loops an idle server wakes up for, which are most of its CPU at rest.
SERVICE_LOOPS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "30",  # 5; the full loop stays at 60
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "30",  # 5; a run is Late 15 s after its time, seen ≤ 30 s later
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "60",  # 5
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "60",  # 15
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_LOOP_SECONDS": "60",  # 5
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "30",  # 15
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "60",  # 20
}
SERVER_TUNING: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # telemetry calls fail offline
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "10",
    # whole seconds: Prefect int()s this value, and 0 would make the flush loop spin
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    # glibc's per-thread heaps: the server's threads (one per SQLite connection, anyio's pool) each kept one
    "MALLOC_ARENA_MAX": "2",
    **SERVICE_LOOPS,
}

# Inherited settings that would point the server at another home, profile or database than pnr's.
_STRIPPED_ENV = frozenset(
    {
        "PREFECT_HOME",
        "PREFECT_PROFILES_PATH",
        "PREFECT_PROFILE",
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_MEMO_STORE_PATH",
        "PREFECT_SERVER_API_HOST",
        "PREFECT_SERVER_API_PORT",
        "PREFECT__SERVER_EPHEMERAL",
        "PREFECT__SERVER_WEBSERVER_ONLY",
    }
)
_STRIPPED_PREFIXES = ("PREFECT_SERVER_DATABASE_", "PREFECT_API_DATABASE_")

_APP = "pnr.backend.server_app:create_app"  # Prefect's app, SQLite transactions IMMEDIATE (see there)
# servers of earlier pnr versions, still recognised (and so stopped, not left holding the port)
_EARLIER_APPS = ("pnr.prefect.server_app:create_app", "prefect.server.api.server:create_app")
_LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.1


class ServerError(PnrError):
    """pnr's Prefect server could not be started, reached or stopped; the message says why and what to do."""


class PortInUseError(ServerError):
    """The server's port is taken by a process pnr did not start."""


def default_state_dir() -> Path:
    """`$PNR_STATE_DIR`, else `$XDG_STATE_HOME/pnr`, else `~/.local/state/pnr`."""
    if state := get_settings().state_dir:
        return state.expanduser()
    if value := os.environ.get("XDG_STATE_HOME"):
        return Path(value).expanduser() / "pnr"
    return Path.home() / ".local" / "state" / "pnr"


@dataclass(frozen=True)
class ServerConfig:
    """What a caller asks for. `None` means "no preference": reuse whatever server runs, and use the default
    (127.0.0.1, 4200, SQLite in the state dir) when a new one has to start."""

    state_dir: Path
    host: str | None = None
    port: int | None = None
    database_url: str | None = None

    @classmethod
    def resolve(
        cls,
        host: str | None = None,
        port: int | None = None,
        database_url: str | None = None,
        state_dir: Path | str | None = None,
    ) -> ServerConfig:
        """Arguments first, then `PNR_SERVER_HOST`, `PNR_SERVER_PORT`, `PNR_SERVER_DATABASE_URL`, `PNR_STATE_DIR`."""
        settings = get_settings()  # a bad PNR_* value: ConfigError naming the variable
        port = port if port is not None else settings.server_port
        if port is not None and not 0 < port < 65536:
            raise ServerError(f"port {port} is out of range (1-65535)")
        return cls(
            state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
            host=host or settings.server_host or None,
            port=port,
            database_url=database_url or settings.server_database_url or None,
        )

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect-home"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "server.lock"

    @property
    def sqlite_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.prefect_home / 'prefect.db'}"


@dataclass(frozen=True)
class ServerInfo:
    """A server pnr started (from its pid file), and whether `/api/health` answered just now."""

    pid: int
    host: str
    port: int
    api_url: str  # what clients set as PREFECT_API_URL
    ui_url: str
    database: str  # "sqlite" or "postgresql"
    database_url: str  # password masked
    started_at: str  # ISO 8601, UTC
    startup_seconds: float | None  # spawn to first healthy answer; None until then
    healthy: bool
    state_dir: Path


@dataclass
class _Record:
    """The pid file's content."""

    pid: int
    host: str
    port: int
    api_url: str
    ui_url: str
    database: str
    database_url: str
    database_fingerprint: str  # sha256 of the full URL: compares URLs without storing the password
    started_at: str
    startup_seconds: float | None
    created: float | None  # the process's start time (seconds since the epoch): guards against pid reuse
    command: list[str]

    def info(self, config: ServerConfig, healthy: bool) -> ServerInfo:
        return ServerInfo(
            pid=self.pid,
            host=self.host,
            port=self.port,
            api_url=self.api_url,
            ui_url=self.ui_url,
            database=self.database,
            database_url=self.database_url,
            started_at=self.started_at,
            startup_seconds=self.startup_seconds,
            healthy=healthy,
            state_dir=config.state_dir,
        )


# --------------------------------------------------------------------------- public API


def ensure_running(
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    *,
    wait: bool = True,
    timeout: float = DEFAULT_START_TIMEOUT,
    state_dir: Path | str | None = None,
) -> tuple[ServerInfo, bool]:
    """The server `pnr up` talks to: the running one if there is one, else a new one (started_now=True).

    A stale pid file (process gone, or the pid now another program's) is removed and a new server started
    with the host, port and database the pid file records, unless the call asks for others.
    A running server with another host, port or database than explicitly asked for is an error: stop it first.
    With `wait`, returns once `/api/health` answers (`startup_seconds` says how long a new server took).
    """
    config = ServerConfig.resolve(host, port, database_url, state_dir)
    if config.database_url:
        _database_kind(config.database_url)  # a bad URL is an error even when a server already runs
    deadline = time.monotonic() + timeout
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(config, deadline):
        record = _read_record(config)
        if record is not None:
            if _is_our_server(record):
                _check_matches(config, record)
                healthy = _healthy(record.api_url)
                if healthy or not wait:
                    return record.info(config, healthy), False
                # still starting (an earlier start(wait=False)), or hung: give it the same deadline
                _wait_healthy(config, record, None, deadline, 0, timeout)
                return record.info(config, healthy=True), False
            config = _as_before(config, record)  # crashed or vanished: back on its port, with its database
            _clear_crashed(record)
            _remove_record(config)
        return _spawn(config, wait, deadline, timeout), True


def running() -> ServerInfo | None:
    """The healthy server `ensure_running()` would return without starting one, else None (nothing runs,
    it is unhealthy or still starting, or it is not the one the settings ask for: `ensure_running` says why)."""
    try:
        config = ServerConfig.resolve()
        record = _read_record(config)
        if record is None or not _is_our_server(record):
            return None
        _check_matches(config, record)
    except PnrError:
        return None
    return record.info(config, healthy=True) if _healthy(record.api_url) else None


def start(
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    *,
    wait: bool = True,
    timeout: float = DEFAULT_START_TIMEOUT,
    state_dir: Path | str | None = None,
) -> ServerInfo:
    """Start pnr's Prefect server, or return the one already running (idempotent); see `ensure_running`."""
    return ensure_running(host, port, database_url, wait=wait, timeout=timeout, state_dir=state_dir)[0]


def stop(timeout: float = 10.0, *, state_dir: Path | str | None = None) -> ServerInfo | None:
    """Stop the server pnr started: SIGTERM to its process group, SIGKILL after `timeout` seconds.

    Returns what was stopped, or None when no server of pnr's runs (a stale pid file is removed; the process
    a stale pid now belongs to is left alone).
    """
    config = ServerConfig.resolve(state_dir=state_dir)
    if not config.state_dir.is_dir():
        return None
    with _locked(config, time.monotonic() + timeout + DEFAULT_START_TIMEOUT):
        record = _read_record(config)
        if record is None:
            return None
        if not _is_our_server(record):
            _remove_record(config)
            return None
        _terminate(record.pid, timeout)
        _remove_record(config)
        return record.info(config, healthy=False)


def status(*, state_dir: Path | str | None = None) -> ServerInfo | None:
    """The running server pnr started (healthy or still starting), or None. Changes nothing."""
    config = ServerConfig.resolve(state_dir=state_dir)
    record = _read_record(config)
    if record is None or not _is_our_server(record):
        return None
    return record.info(config, healthy=_healthy(record.api_url))


def logs(lines: int = 50, *, state_dir: Path | str | None = None) -> str:
    """The last `lines` lines of server.log ("" when there is none)."""
    return daemon.tail(ServerConfig.resolve(state_dir=state_dir).log_file, lines)


# --------------------------------------------------------------------------- starting


def _spawn(config: ServerConfig, wait: bool, deadline: float, timeout: float) -> ServerInfo:
    host = config.host or DEFAULT_HOST
    port = config.port or _default_port(host)
    api_url = f"http://{_url_host(host)}:{port}/api"
    database_url = config.database_url or config.sqlite_url
    database = _database_kind(database_url)
    _check_port_free(host, port, api_url, config.state_dir)
    if database == "postgresql":
        _check_postgres_reachable(database_url)

    command = _server_command(host, port)
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    seeded = database == "sqlite" and not config.database_url and seed_database(config.prefect_home)
    stamp = _now()
    header = [f"starting the Prefect server on {host}:{port} ({database}) at {stamp}"]
    if seeded:
        header.append(f"new database from the template {seeded} (migrated, block types registered)")
    env = _server_env(config, host, port, database_url)
    # cwd: no ./prefect.toml, .env or pyproject.toml of the caller's folder
    spawned = daemon.spawn_detached(command, env, config.log_file, cwd=config.state_dir, header=header)
    process = spawned.process
    record = _Record(
        pid=process.pid,
        host=host,
        port=port,
        api_url=api_url,
        ui_url=api_url.removesuffix("/api"),
        database=database,
        database_url=_redact(database_url),
        database_fingerprint=_fingerprint(database_url),
        started_at=stamp,
        startup_seconds=None,
        created=processes.created(process.pid),
        command=command,
    )
    _write_record(config, record)
    if not wait:
        return record.info(config, healthy=False)
    record.startup_seconds = round(_wait_healthy(config, record, process, deadline, spawned.log_offset, timeout), 2)
    _write_record(config, record)
    return record.info(config, healthy=True)


TEMPLATES = Path(__file__).resolve().parent / "templates"


def template_path(prefect_version: str | None = None) -> Path:
    """The empty, migrated SQLite database for this Prefect version (scripts/make_db_template.py makes it)."""
    if prefect_version is None:
        from importlib.metadata import version

        prefect_version = version("prefect")
    return TEMPLATES / f"prefect-{prefect_version}.db.gz"


def template_memo(template: Path) -> Path:
    """Prefect's record of its block registration, shipped beside the database template."""
    return template.with_suffix("").with_suffix(".memo.toml")


def seed_database(prefect_home: Path) -> str | None:
    """A new server's first start migrates an empty SQLite database (~10 s of its ~17 s on 2 cores): when there
    is no database yet and pnr ships the template for the installed Prefect version, start from a copy of it
    instead (Prefect still checks the migrations on start). Returns the template's name, or None."""
    db = prefect_home / "prefect.db"
    template = template_path()
    if db.exists() or not template.is_file():
        return None
    import gzip
    import shutil

    tmp = db.with_name(".prefect.db.seeding")
    with gzip.open(template, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, db)
    memo = template_memo(template)
    if memo.is_file() and not (prefect_home / "memo_store.toml").exists():
        shutil.copyfile(memo, prefect_home / "memo_store.toml")
    return template.name


def _wait_healthy(
    config: ServerConfig,
    record: _Record,
    process: subprocess.Popen[bytes] | None,
    deadline: float,
    log_offset: int,
    timeout: float,
) -> float:
    """Poll `/api/health` until it answers 200; fail fast when the process dies. Returns seconds waited."""
    began = time.monotonic()
    while True:
        exited = process.poll() if process is not None else None
        if exited is not None or (process is None and not _is_our_server(record)):
            _remove_record(config)
            code = f" with exit code {exited}" if exited is not None else ""
            raise ServerError(
                f"the Prefect server (pid {record.pid}) exited during start-up{code}; "
                f"last lines of {config.log_file}:\n{daemon.tail(config.log_file, _LOG_TAIL_LINES, log_offset)}"
            )
        if _healthy(record.api_url):  # not listening yet: uvicorn binds the port only after migrations
            return time.monotonic() - began
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    tail = daemon.tail(config.log_file, _LOG_TAIL_LINES, log_offset)
    if process is not None:
        _terminate(process.pid, 5.0)
        _remove_record(config)
        raise ServerError(
            f"the Prefect server on port {record.port} did not answer {record.api_url}/health within "
            f"{timeout:.0f}s; stopped it. Allow more time (timeout) on a slow machine or first start. "
            f"Last lines of {config.log_file}:\n{tail}"
        )
    raise ServerError(
        f"pnr's Prefect server (pid {record.pid}, port {record.port}) runs but has not answered "
        f"{record.api_url}/health for {timeout:.0f}s; stop it (`pnr server stop`) and start again. "
        f"Last lines of {config.log_file}:\n{tail}"
    )


def _server_command(host: str, port: int) -> list[str]:
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"prefect is not installed for {sys.executable}; install pnr's dependencies")
    # --app-dir: uvicorn puts it first on sys.path; the default "." could shadow prefect with a local folder
    app_dir = str(Path(next(iter(spec.submodule_search_locations))).parent)
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        app_dir,
        "--factory",
        _APP,
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def _server_env(config: ServerConfig, host: str, port: int, database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _STRIPPED_ENV and not key.startswith(_STRIPPED_PREFIXES)
    }
    for key, value in SERVER_TUNING.items():
        env.setdefault(key, value)
    env.update(
        {
            "PREFECT_HOME": str(config.prefect_home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
            # the UI's JavaScript calls http://HOST:PORT/api unless PREFECT_UI_API_URL says otherwise
            "PREFECT_SERVER_API_HOST": host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT__SERVER_FINAL": "1",  # as `prefect server start` sets it
        }
    )
    return env


def _check_port_free(host: str, port: int, api_url: str, config_dir: Path) -> None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ServerError(f"invalid host {host!r} for the Prefect server: {exc}") from None
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
            return
    except OSError as exc:
        reason = exc.strerror or str(exc)
    who = processes.listener_of(port) or "another process"
    if _healthy(api_url, timeout=1.0):
        who = f"a Prefect server not started from {config_dir}, {who} (use it with PREFECT_API_URL={api_url})"
    raise PortInUseError(
        f"port {port} on {host} is already in use by {who} ({reason}); choose another port with --port "
        f"(or PNR_SERVER_PORT), or stop the process that holds port {port}"
    )


def _database_kind(url: str) -> str:
    scheme = url.split("://", 1)[0]
    if scheme == "postgresql+asyncpg":
        return "postgresql"
    if scheme == "sqlite+aiosqlite":
        return "sqlite"
    raise ServerError(
        f"unsupported database URL {_redact(url)!r}: use postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB "
        "(scripts/ensure_postgres.sh prints one), or leave it unset for SQLite in pnr's state dir"
    )


def _check_postgres_reachable(url: str) -> None:
    parts = urlsplit(url)
    if not parts.hostname:
        return  # a Unix socket given in the query: let the server report it
    address = (parts.hostname, parts.port or 5432)
    try:
        socket.create_connection(address, timeout=3.0).close()
    except OSError as exc:
        raise ServerError(
            f"cannot reach PostgreSQL at {address[0]}:{address[1]} ({exc.strerror or exc}); start it "
            "(scripts/ensure_postgres.sh) or fix the database URL (PNR_SERVER_DATABASE_URL)"
        ) from None


def _as_before(config: ServerConfig, record: _Record) -> ServerConfig:
    """The request, completed from the record of a server that is gone (restarting it keeps its clients' URL)."""
    if record.pid <= 0:  # an unreadable pid file: nothing to go by
        return config
    database_url = config.database_url
    if database_url is None:
        if _fingerprint(record.database_url) == record.database_fingerprint:
            database_url = record.database_url  # recorded in full (no password to mask)
        elif record.database != "sqlite":
            raise ServerError(
                f"pnr's Prefect server (pid {record.pid}, {record.api_url}) is gone; it used {record.database_url}. "
                "Give that database URL again (--database or PNR_SERVER_DATABASE_URL) to restart it, or "
                "forget it with `pnr server stop` and start afresh on SQLite"
            )
    return replace(config, host=config.host or record.host, port=config.port or record.port, database_url=database_url)


def _check_matches(config: ServerConfig, record: _Record) -> None:
    """An explicit request that the running server does not satisfy is an error, never a silent swap."""
    wanted: list[str] = []
    if config.host and config.host != record.host:
        wanted.append(f"host {config.host} (it listens on {record.host})")
    if config.port and config.port != record.port:
        wanted.append(f"port {config.port} (it listens on {record.port})")
    if config.database_url and _fingerprint(config.database_url) != record.database_fingerprint:
        wanted.append(f"database {_redact(config.database_url)} (it uses {record.database}: {record.database_url})")
    if wanted:
        raise ServerError(
            f"pnr's Prefect server already runs (pid {record.pid}, {record.api_url}) but you asked for "
            + "; ".join(wanted)
            + ". Stop it first (`pnr server stop`), or drop the option to use the running one."
        )


# --------------------------------------------------------------------------- processes


def _is_our_server(record: _Record) -> bool:
    """Alive, still the process pnr started (same start time), and running a Prefect server on its port."""
    if record.pid <= 0 or not processes.alive(record.pid):
        return False
    if not processes.started_at(record.pid, record.created):
        return False  # the pid was reused
    cmdline = processes.cmdline(record.pid)
    joined = " ".join(cmdline)
    is_server = any(app in joined for app in (_APP, *_EARLIER_APPS)) or (
        "prefect" in joined and "server" in cmdline and "start" in cmdline
    )
    port = str(record.port)
    on_port = f"--port={port}" in cmdline or any(a == "--port" and b == port for a, b in itertools.pairwise(cmdline))
    return is_server and on_port


# --------------------------------------------------------------------------- files


@contextmanager
def _locked(config: ServerConfig, deadline: float) -> Iterator[None]:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(config.lock_file, timeout=max(0.0, deadline - time.monotonic())):
            yield
    except TimeoutError:
        raise ServerError(
            f"another pnr process has been starting or stopping the Prefect server for too long "
            f"(it holds {config.lock_file}); try again, or see {config.log_file}"
        ) from None


def _read_record(config: ServerConfig) -> _Record | None:
    data = daemon.read_pid_file(config.pid_file)
    if data is None:
        return None
    known = {key: data[key] for key in _Record.__dataclass_fields__ if key in data}
    known.setdefault("created", None)  # a record of an earlier pnr: identified by command line and port
    try:
        return _Record(**known)
    except TypeError:  # unreadable, or written by another version: stale, never alive
        return _Record(0, "", 0, "", "", "", "", "", "", None, None, [])


def _write_record(config: ServerConfig, record: _Record) -> None:
    daemon.write_pid_file(config.pid_file, asdict(record))


def _remove_record(config: ServerConfig) -> None:
    config.pid_file.unlink(missing_ok=True)


# --------------------------------------------------------------------------- small helpers


def _healthy(api_url: str, timeout: float = 2.0) -> bool:
    """`GET /api/health` answers 200. One HTTP/1.0 request on a plain socket: every `pnr up` asks this of
    pnr's own server (plain http on this machine), and importing httpx costs ~0.1 s, urllib.request ~15 ms;
    no proxy settings apply to it (urllib would send it through $http_proxy)."""
    url = urlsplit(f"{api_url}/health")
    if url.scheme != "http" or not url.hostname:
        import urllib.request

        try:
            with urllib.request.urlopen(url.geturl(), timeout=timeout) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False
    try:
        with socket.create_connection((url.hostname, url.port or 80), timeout=timeout) as conn:
            conn.sendall(f"GET {url.path} HTTP/1.0\r\nHost: {url.netloc}\r\n\r\n".encode("ascii"))
            head = b""
            while b"\r\n" not in head and len(head) < 256:
                chunk = conn.recv(256)
                if not chunk:
                    break
                head += chunk
    except (OSError, ValueError):
        return False
    status = head.split(b"\r\n", 1)[0].split(b" ")  # b"HTTP/1.1 200 OK"
    return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


def _url_host(host: str) -> str:
    """The address clients on this machine use for a bind address (wildcards become loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _terminate(pid: int, timeout: float) -> None:
    if not processes.terminate(pid, timeout):
        raise ServerError(f"the Prefect server (pid {pid}) survived SIGKILL; check it with `ps -o stat,args -p {pid}`")


def _clear_crashed(record: _Record, wait: float = 10.0) -> None:
    """A crashed server's port gets a moment to be released before a new server binds it."""
    until = time.monotonic() + wait
    while time.monotonic() < until and not _port_bindable(record.host, record.port):
        time.sleep(_POLL_SECONDS)


def _port_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def _default_port(host: str) -> int:
    """4200, Prefect's port; when something else holds it (another Prefect, a CI neighbour) and no port was
    asked for, the next free one of 4201-4299, so `pnr up` works on a shared machine (the UI URL says which)."""
    for port in range(DEFAULT_PORT, DEFAULT_PORT + 100):
        if _port_bindable(host, port):
            return port
    return DEFAULT_PORT  # all taken: the port check names what holds 4200
