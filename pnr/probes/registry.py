"""Which probe runs a check: built-in kinds by their `kind` (each in its own module of this package, found
here without a list to keep), third-party kinds through the model layer's `PLUGINS`."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import httpx

from pnr.exceptions import PnrError
from pnr.model import PLUGINS, CheckBase
from pnr.probes.base import BUILTIN_PROBES, Probe, ProbeContext, Target

_NOT_KINDS = {"base", "registry"}


@cache
def probe_kinds() -> dict[str, type[Probe]]:
    """Every built-in probe class by kind (imports each kind module of `pnr.probes` once)."""
    package = importlib.import_module("pnr.probes")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_KINDS:
            importlib.import_module(f"pnr.probes.{module.name}")
    return dict(BUILTIN_PROBES)


def make_probe(check: CheckBase, ctx: ProbeContext | Target, transport: httpx.BaseTransport | None = None) -> Probe:
    """The probe for a validated check. `ctx` may be a bare Target for port kinds (as in unit tests)."""
    if isinstance(ctx, Target):
        ctx = ProbeContext(target_override=ctx, transport=transport)
    elif transport is not None:
        ctx.transport = transport
    kind = str(getattr(check, "type", ""))
    probe_cls = probe_kinds().get(kind) or PLUGINS.implementation(kind)
    if probe_cls is None:
        raise PnrError(f"no probe for health check type {kind!r}")
    probe: Probe = probe_cls.from_check(check, ctx)
    return probe


def register_probe(probe_cls: type[Probe], kind: str | None = None) -> str:
    """Register a third-party probe kind: `probe_cls.check_model` validates its config like a built-in."""
    if not (isinstance(probe_cls, type) and issubclass(probe_cls, Probe)):
        raise TypeError(f"{probe_cls!r} is not a subclass of pnr.probes.Probe")
    return PLUGINS.register(probe_cls, kind)


def load_plugins(reload: bool = False) -> dict[str, type[Probe]]:
    """Load third-party probe kinds from the entry points `pnr.probes` (once per process)."""
    PLUGINS.load(reload)
    return {kind: PLUGINS.implementation(kind) for kind in PLUGINS.models()}
