"""pnr: bring up Docker containers in order of real readiness, as Prefect flows driven by JSON configs.

The public surface: config models and loading, planning, the exception tree. Flows live in `pnr.flows`.
"""

from pnr.config import (
    AllCheck,
    AnyCheck,
    ContainerSpec,
    Cpux,
    DesignChunk,
    DockerCheck,
    Domain,
    ExecCheck,
    HttpCheck,
    LogCheck,
    PluginCheck,
    PnR,
    SignalCheck,
    TcpCheck,
    load_domain,
    parse_domain,
)
from pnr.exceptions import (
    ChunkFailed,
    ConfigError,
    EngineError,
    ImageError,
    PnrError,
    RunError,
    RunTimeout,
    StallError,
)
from pnr.plan import Plan, load_plan, make_plan

__all__ = [
    "AllCheck",
    "AnyCheck",
    "ChunkFailed",
    "ConfigError",
    "ContainerSpec",
    "Cpux",
    "DesignChunk",
    "DockerCheck",
    "Domain",
    "EngineError",
    "ExecCheck",
    "HttpCheck",
    "ImageError",
    "LogCheck",
    "Plan",
    "PluginCheck",
    "PnR",
    "PnrError",
    "RunError",
    "RunTimeout",
    "SignalCheck",
    "StallError",
    "TcpCheck",
    "load_domain",
    "load_plan",
    "make_plan",
    "parse_domain",
]
__version__ = "0.1.0"
