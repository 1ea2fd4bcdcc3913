"""pnr: bring up Docker containers in order of real readiness, as Prefect flows driven by JSON configs."""

from pnr.config import ContainerSpec, Cpux, DesignChunk, Domain, HttpCheck, PnR, TcpCheck, load_domain, parse_domain
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
    "ChunkFailed",
    "ConfigError",
    "ContainerSpec",
    "Cpux",
    "DesignChunk",
    "Domain",
    "EngineError",
    "HttpCheck",
    "ImageError",
    "Plan",
    "PnR",
    "PnrError",
    "RunError",
    "RunTimeout",
    "StallError",
    "TcpCheck",
    "load_domain",
    "load_plan",
    "make_plan",
    "parse_domain",
]
__version__ = "0.1.0"
