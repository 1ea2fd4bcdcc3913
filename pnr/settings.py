"""pnr's settings in one place (environment variables with the PNR_ prefix)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from pnr.exceptions import ConfigError, ConfigIssue

# The standard library only: every `pnr` command reads these first thing, and pydantic-settings (with pydantic and
# asyncio) cost a fresh process ~0.15 s of imports before `pnr up` could hand its run to the resident runner.


T = TypeVar("T")
N = TypeVar("N", int, float)


def _setting(default: T, doc: str, parse: Callable[[str], T] | None = None) -> T:
    return field(default=default, metadata={"doc": doc, "parse": parse})


def _number(kind: type[N], low: float, high: float | None = None, low_ok: bool = False) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value: N | None
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ((value >= low if low_ok else value > low) and (high is None or value < high)):
            what = "a whole number" if kind is int else "a number"
            bounds = f"{'at least' if low_ok else 'greater than'} {low:g}" + (f" and below {high:g}" if high else "")
            raise ValueError(f"must be {what} {bounds}, not {text!r}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in options:
            raise ValueError(f"must be {' or '.join(options)}, not {text!r}")
        return word

    return parse


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on", "y", "t"):
        return True
    if word in ("0", "false", "no", "off", "n", "f"):
        return False
    raise ValueError(f"must be true or false (1/0, yes/no, on/off), not {text!r}")


@dataclass(frozen=True)
class PnrSettings:
    """Each field is the environment variable PNR_<NAME>; an empty one counts as unset."""

    runtime_dir: Path = _setting(Path("runtime"), "folder of the runtime JSON mirror", Path)  # noqa: RUF009 (a field())
    timeout_seconds: float = _setting(300.0, "default bound of a bring-up", _number(float, 0))
    gate_slice_seconds: float = _setting(
        60.0, "the first gate-wait attempt before a Prefect retry; later ones double (at most 300 s)", _number(float, 0)
    )
    heartbeat: bool = _setting(False, "keep Prefect's flow-run heartbeat for runs started by the CLI", _flag)
    ephemeral_server: bool = _setting(
        False, "run each `pnr up` against a throw-away Prefect server instead of pnr's resident one", _flag
    )
    state_dir: Path | None = _setting(  # noqa: RUF009 (a field())
        None, "pnr's state (its Prefect server, runner) [default: $XDG_STATE_HOME/pnr or ~/.local/state/pnr]", Path
    )
    server_host: str | None = _setting(None, "address of pnr's Prefect server [default: 127.0.0.1]")
    server_port: int | None = _setting(None, "port of its UI and API [default: 4200]", _number(int, 0, 65536))
    server_database_url: str | None = _setting(
        None, "postgresql+asyncpg://... for pnr's Prefect server [default: SQLite in the state dir]"
    )
    runner: bool = _setting(True, "let the resident runner next to pnr's Prefect server execute `pnr up` runs", _flag)
    early_start: bool = _setting(
        True,
        "while a `pnr up` waits for pnr's Prefect server or runner to start, bring the domain up already; the run's"
        " flow run takes over once they answer",
        _flag,
    )
    runners: int = _setting(
        0, "processes of the resident runner [default 0: one per CPU core, at most 4]", _number(int, 0, 65, low_ok=True)
    )
    runner_start: str | None = _setting(
        None,
        "how the runner starts its other processes: fork or spawn [default: fork on Linux, else spawn]",
        _choice("fork", "spawn"),
    )
    runner_idle_seconds: float = _setting(
        60.0,
        "a forked runner worker ends after this long without a connection; the next run forks a fresh one"
        " (0: workers never end)",
        _number(float, 0, low_ok=True),
    )
    runner_transport: str | None = _setting(
        None,
        "how `pnr up` reaches the runner: unix (socket file) or tcp (loopback, with a secret token) "
        "[default: unix where the platform has it]",
        _choice("unix", "tcp"),
    )

    chunk_events: bool = _setting(
        True,
        "a bring-up emits pnr.chunk.starting / .ready and pnr.signal.changed (each event costs the Prefect server"
        " ~5 ms of CPU: off for domains of hundreds of chunks that no automation follows chunk by chunk)",
        _flag,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PnrSettings:
        """The settings in `environ` (default: this process's); ConfigError naming every bad variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        issues = []
        for f in fields(cls):
            name = "PNR_" + f.name.upper()
            raw = environ.get(name, "")
            if raw == "":
                continue
            parse = f.metadata["parse"]
            try:
                values[f.name] = parse(raw) if parse is not None else raw
            except ValueError as exc:
                issues.append(ConfigIssue(name, str(exc)))
        if issues:
            raise ConfigError("environment", issues)
        return cls(**values)


def get_settings() -> PnrSettings:
    """The PNR_* settings; a bad value is a ConfigError naming the variable (exit 2), never a traceback."""
    return PnrSettings.from_env()


def run_settings(environ: Mapping[str, str] | None) -> PnrSettings:
    """The settings of whoever asked for a run: `environ` is the `pnr up` client's environment when pnr's
    resident runner runs it (the runner's own would silently win otherwise), None this process's (a bad value
    is then a ConfigError, as from `get_settings`). The client checked its values when it asked, so a bad one
    there means the defaults, not an error in the middle of a run."""
    if environ is None:
        return get_settings()
    try:
        return PnrSettings.from_env(environ)
    except ConfigError:
        return PnrSettings.from_env({})


def resolve_runtime_dir(value: str | Path | None) -> Path:
    """--runtime-dir, else PNR_RUNTIME_DIR, else ./runtime (created when first written). A file there is bad
    input (exit 2), not a traceback at the first write."""
    path = Path(value) if value else get_settings().runtime_dir
    if path.exists() and not path.is_dir():
        where = ("--runtime-dir", "") if value else ("environment", "PNR_RUNTIME_DIR")
        raise ConfigError(
            where[0],
            [ConfigIssue(where[1], f"{path} is a file; the runtime folder must be a folder (or not exist yet)")],
        )
    return path


def quiet_prefect_env(verbose: bool = False) -> dict[str, str]:
    """Offline-friendly, quiet Prefect defaults for pnr's processes (the CLI, the runner, benchmarks); callers
    apply them with `os.environ.setdefault`, so anything the user set explicitly wins."""
    console = "INFO" if verbose else "CRITICAL"
    return {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": console,
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": console,
        "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": console,
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING" if verbose else "CRITICAL",
        "PREFECT_CLI_COLORS": "false",
        # the first start of a temporary server migrates its database: slow on a busy machine
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
