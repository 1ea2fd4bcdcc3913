"""The engine layer: the docker-py adapter (one `Engine` object per Docker engine, passed in), the engines of
a domain (`EngineSet`), convergence (reuse / recreate, with reasons) and host-port checks. Docker errors
become `EngineError` here."""

from pnr.engines.converge import (
    Decision,
    config_hash,
    decide,
    describe_changes,
    desired_state,
    not_ours,
    other_configs,
    spec_label,
)
from pnr.engines.engine import (
    LABEL_CHUNK,
    LABEL_CONFIG,
    LABEL_CPUX,
    LABEL_DOMAIN,
    LABEL_HASH,
    LABEL_MANAGED,
    LABEL_RUN,
    LABEL_SPEC,
    ContainerState,
    Engine,
    LogStream,
    image_ref,
    network_name,
)
from pnr.engines.engineset import EngineSet, engine_from_spec, used_engines
from pnr.engines.ports import host_port_clashes, host_port_problem

__all__ = [
    "LABEL_CHUNK",
    "LABEL_CONFIG",
    "LABEL_CPUX",
    "LABEL_DOMAIN",
    "LABEL_HASH",
    "LABEL_MANAGED",
    "LABEL_RUN",
    "LABEL_SPEC",
    "ContainerState",
    "Decision",
    "Engine",
    "EngineSet",
    "LogStream",
    "config_hash",
    "decide",
    "describe_changes",
    "desired_state",
    "engine_from_spec",
    "host_port_clashes",
    "host_port_problem",
    "image_ref",
    "network_name",
    "not_ours",
    "other_configs",
    "spec_label",
    "used_engines",
]
