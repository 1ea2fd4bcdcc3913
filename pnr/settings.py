"""pnr's settings in one place (environment variables with the PNR_ prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pnr.exceptions import ConfigError, ConfigIssue


class PnrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PNR_", extra="ignore")

    runtime_dir: Path = Field(default=Path("runtime"), description="folder of the runtime JSON mirror")
    timeout_seconds: float = Field(default=300.0, gt=0, description="default bound of a bring-up")
    gate_slice_seconds: float = Field(
        default=60.0,
        gt=0,
        description="the first gate-wait attempt before a Prefect retry; later ones double (at most 300 s)",
    )
    heartbeat: bool = Field(default=False, description="keep Prefect's flow-run heartbeat for runs started by the CLI")
    ephemeral_server: bool = Field(
        default=False,
        description="run each `pnr up` against a throw-away Prefect server instead of pnr's resident one",
    )
    state_dir: Path | None = Field(
        default=None,
        description="pnr's state (its Prefect server, runner) [default: $XDG_STATE_HOME/pnr or ~/.local/state/pnr]",
    )
    server_host: str | None = Field(default=None, description="address of pnr's Prefect server [default: 127.0.0.1]")
    server_port: int | None = Field(default=None, gt=0, lt=65536, description="port of its UI and API [default: 4200]")
    server_database_url: str | None = Field(
        default=None, description="postgresql+asyncpg://... for pnr's Prefect server [default: SQLite in the state dir]"
    )
    runner: bool = Field(
        default=True, description="let the resident runner next to pnr's Prefect server execute `pnr up` runs"
    )
    runners: int = Field(
        default=0, ge=0, le=64, description="processes of the resident runner [default 0: one per CPU core, at most 4]"
    )


def get_settings() -> PnrSettings:
    """The PNR_* settings; a bad value is a ConfigError naming the variable (exit 2), never a traceback."""
    try:
        return PnrSettings()
    except ValidationError as exc:
        issues = [ConfigIssue("PNR_" + str(err["loc"][0]).upper(), err["msg"]) for err in exc.errors(include_url=False)]
        raise ConfigError("environment", issues) from None


def resolve_runtime_dir(value: str | Path | None) -> Path:
    """--runtime-dir, else PNR_RUNTIME_DIR, else ./runtime."""
    return Path(value) if value else get_settings().runtime_dir


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
