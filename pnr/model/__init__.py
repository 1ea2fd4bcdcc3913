"""The model layer: config models, the loader with its error rendering, and the plan (the signal graph).

Pure: nothing here touches Docker, Prefect or the runtime folder; the only I/O is reading a config file.
"""

from pnr.model.checks import (
    BUILTIN_CHECKS,
    PLUGINS,
    AllCheck,
    AnyCheck,
    CheckBase,
    DockerCheck,
    ExecCheck,
    HealthCheck,
    HttpCheck,
    LogCheck,
    PluginCheck,
    PortCheck,
    SignalCheck,
    SocketCheck,
    TcpCheck,
    check_kinds,
    iter_checks,
)
from pnr.model.container import DEFAULT_HOST_IP, ContainerSpec, PortBinding, parse_port
from pnr.model.domain import Cpux, DependencyPolicy, DesignChunk, Domain
from pnr.model.engines import DEFAULT_ENGINE, EngineSpec, EngineTls
from pnr.model.env import (
    ChunkReference,
    ChunkResolver,
    domain_environ,
    expand_env,
    find_port_key,
    parse_chunk_reference,
)
from pnr.model.fields import MappedSignal, PnR, StatusMapping, check_signal_name, parse_expected_code, parse_json_path
from pnr.model.loader import MAX_CONFIG_BYTES, domain_json_schema, load_domain, parse_domain
from pnr.model.paths import json_path
from pnr.model.plan import (
    PNR_ITSELF,
    SYSTEM_READY,
    SYSTEM_READY_VALUE,
    Plan,
    check_config,
    load_plan,
    make_plan,
    produced_by,
)

__all__ = [
    "BUILTIN_CHECKS",
    "DEFAULT_ENGINE",
    "DEFAULT_HOST_IP",
    "MAX_CONFIG_BYTES",
    "PLUGINS",
    "PNR_ITSELF",
    "SYSTEM_READY",
    "SYSTEM_READY_VALUE",
    "AllCheck",
    "AnyCheck",
    "CheckBase",
    "ChunkReference",
    "ChunkResolver",
    "ContainerSpec",
    "Cpux",
    "DependencyPolicy",
    "DesignChunk",
    "DockerCheck",
    "Domain",
    "EngineSpec",
    "EngineTls",
    "ExecCheck",
    "HealthCheck",
    "HttpCheck",
    "LogCheck",
    "MappedSignal",
    "Plan",
    "PluginCheck",
    "PnR",
    "PortBinding",
    "PortCheck",
    "SignalCheck",
    "SocketCheck",
    "StatusMapping",
    "TcpCheck",
    "check_config",
    "check_kinds",
    "check_signal_name",
    "domain_environ",
    "domain_json_schema",
    "expand_env",
    "find_port_key",
    "iter_checks",
    "json_path",
    "load_domain",
    "load_plan",
    "make_plan",
    "parse_chunk_reference",
    "parse_domain",
    "parse_expected_code",
    "parse_json_path",
    "parse_port",
    "produced_by",
]
