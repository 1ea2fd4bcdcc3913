"""The engine layer: the docker-py adapter (one `Engine` object per Docker engine, passed in), the engines of
a domain (`EngineSet`), convergence (reuse / recreate, with reasons), host-port checks, and which engine the
environment names (`resolve_endpoint`, as the docker CLI finds it). Docker errors become `EngineError` here.

The names below are imported on first use: `pnr.engines.resolve` stays free of docker-py (the thin `pnr up`
client uses it)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from pnr.engines.dockerapi import LogStream
    from pnr.engines.engine import (
        LABEL_CHUNK,
        LABEL_CONFIG,
        LABEL_CPUX,
        LABEL_DOMAIN,
        LABEL_HASH,
        LABEL_MANAGED,
        LABEL_RUN,
        LABEL_SPEC,
        Engine,
        engine_from_spec,
        image_ref,
        network_name,
    )
    from pnr.engines.engineset import EngineSet, used_engines
    from pnr.engines.ports import host_port_clashes, host_port_problem
    from pnr.engines.protocol import ContainerState
    from pnr.engines.resolve import Endpoint, UnknownContext, resolve_endpoint

_WHERE = {
    "ContainerState": "pnr.engines.protocol",
    "Decision": "pnr.engines.converge",
    "Endpoint": "pnr.engines.resolve",
    "Engine": "pnr.engines.engine",
    "EngineSet": "pnr.engines.engineset",
    "LABEL_CHUNK": "pnr.engines.engine",
    "LABEL_CPUX": "pnr.engines.engine",
    "LABEL_DOMAIN": "pnr.engines.engine",
    "LABEL_HASH": "pnr.engines.engine",
    "LABEL_MANAGED": "pnr.engines.engine",
    "LABEL_RUN": "pnr.engines.engine",
    "LABEL_SPEC": "pnr.engines.engine",
    "LogStream": "pnr.engines.dockerapi",
    "UnknownContext": "pnr.engines.resolve",
    "config_hash": "pnr.engines.converge",
    "decide": "pnr.engines.converge",
    "describe_changes": "pnr.engines.converge",
    "desired_state": "pnr.engines.converge",
    "engine_from_spec": "pnr.engines.engine",
    "host_port_clashes": "pnr.engines.ports",
    "host_port_problem": "pnr.engines.ports",
    "image_ref": "pnr.engines.engine",
    "network_name": "pnr.engines.engine",
    "not_ours": "pnr.engines.converge",
    "resolve_endpoint": "pnr.engines.resolve",
    "spec_label": "pnr.engines.converge",
    "other_configs": "pnr.engines.converge",
    "LABEL_CONFIG": "pnr.engines.engine",
    "used_engines": "pnr.engines.engineset",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    "Endpoint",
    "Engine",
    "EngineSet",
    "LogStream",
    "UnknownContext",
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
    "resolve_endpoint",
    "spec_label",
    "used_engines",
]
