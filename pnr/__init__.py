"""pnr: bring up Docker containers in order of real readiness, as Prefect flows driven by JSON configs.

The public surface: config models and loading, planning, the exception tree. The layers, top to bottom
(each imports only the ones below it; see docs/architecture.md):

    pnr.cli          parsing and rendering
    pnr.backend      the resident backend: pnr's Prefect server, the runner pool, which one a command uses
    pnr.prefect      flows, tasks, artifacts, events, serve
    pnr.lifecycle    run control, chunk drivers, the CPUX scheduler, watch, down/status
    pnr.probes       one module per probe kind
    pnr.engines      the docker-py adapter, convergence, host ports
    pnr.runtime      the runtime folder: signal store, chunk-state file
    pnr.model        config models, loader, plan
    pnr.exceptions, pnr.settings, pnr.processes
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

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

if _TYPE_CHECKING:
    from pnr.model import (
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
        Plan,
        PluginCheck,
        PnR,
        SignalCheck,
        SocketCheck,
        TcpCheck,
        load_domain,
        load_plan,
        make_plan,
        parse_domain,
    )


def __getattr__(name: str) -> _Any:
    """The config models load on first use: `pnr up` as a thin client of the resident runner never needs
    them (the runner checks the config), and importing them costs a fresh process ~0.15 s."""
    if name in __all__:  # the exceptions are imported above: only the model's names get here
        import pnr.model

        return getattr(pnr.model, name)
    raise AttributeError(f"module 'pnr' has no attribute {name!r}")


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
    "SocketCheck",
    "StallError",
    "TcpCheck",
    "load_domain",
    "load_plan",
    "make_plan",
    "parse_domain",
]
__version__ = "0.1.0"
