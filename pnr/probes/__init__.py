"""Readiness probes: one small module per kind behind a base that owns timing (`pnr.probes.base`).

    Probe (base.py)       timing, thresholds (Streak), result, ProbeContext
    ├── tcp.py            TcpProbe: a connection is accepted and kept open
    ├── http.py           HttpProbe: status / body / JSON field over http or https
    ├── exec.py           ExecProbe: a command inside the container exits 0
    ├── log.py            LogProbe: a regex seen N times in the container's logs
    ├── docker.py         DockerProbe: the image's HEALTHCHECK says healthy
    ├── signal.py         SignalProbe: a signal in the runtime state has the wanted tv
    ├── socket.py         SocketProbe: send a line, the reply matches (redis PING, banners)
    ├── composite.py      AllProbe / AnyProbe
    └── third-party kinds: entry point group `pnr.probes` (see docs/probes.md)

A new kind is one module here (a `Probe` subclass with `kind = "<type>"` and `from_check`) plus its check
model in `pnr.model.checks` (the `BuiltinCheck` union). `registry.make_probe` finds it.
"""

from pnr.probes.base import (
    Aborted,
    Attempt,
    ContainerGone,
    NeverReady,
    Probe,
    ProbeContext,
    ProbeResult,
    Streak,
    Target,
    timing_of,
)
from pnr.probes.registry import load_plugins, make_probe, probe_kinds, register_probe

__all__ = [
    "Aborted",
    "Attempt",
    "ContainerGone",
    "NeverReady",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Streak",
    "Target",
    "load_plugins",
    "make_probe",
    "probe_kinds",
    "register_probe",
    "timing_of",
]
