"""The dependency graph of the services: what each waits for, checked (defined, no cycle), cut to the enabled
profiles, in start order."""

from __future__ import annotations

from dataclasses import dataclass

from pnr.compose._project import did_you_mean
from pnr.compose._report import Context
from pnr.compose._spec import ServiceSpec
from pnr.compose._values import as_bool
from pnr.compose._yaml import key_path

STARTED, HEALTHY, COMPLETED = "service_started", "service_healthy", "service_completed_successfully"


@dataclass
class Dep:
    """One dependency of a service: the condition it waits for, and where it is written."""

    condition: str
    path: str
    required: bool = True
    restart: bool = False
    implicit: str | None = None  # the key that implies the dependency (links, volumes_from, network_mode, ...)


def deps_of(ctx: Context, name: str, svc: ServiceSpec) -> dict[str, Dep]:
    """What a service waits for: `depends_on`, and the dependencies `links`, `volumes_from` and `service:` imply."""
    base = key_path("services", name)
    out: dict[str, Dep] = {}
    depends = svc.get("depends_on")
    dpath = key_path(base, "depends_on")
    if isinstance(depends, list):
        for i, dep in enumerate(depends):
            out[dep] = Dep(STARTED, key_path(dpath, i))
    elif isinstance(depends, dict):
        for dep, spec in depends.items():
            path = key_path(dpath, dep)
            out[dep] = Dep(
                spec["condition"],
                path,
                as_bool(ctx, spec.get("required", True), key_path(path, "required")),
                as_bool(ctx, spec.get("restart", False), key_path(path, "restart")),
            )
    for i, link in enumerate(svc.get("links") or []):
        out.setdefault(link.split(":")[0], Dep(STARTED, key_path(key_path(base, "links"), i), implicit="links"))
    for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
        value = svc.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            out.setdefault(value.removeprefix("service:"), Dep(STARTED, key_path(base, key), implicit=key))
    for i, item in enumerate(svc.get("volumes_from") or []):
        if not item.startswith("container:"):
            path = key_path(key_path(base, "volumes_from"), i)
            out.setdefault(item.split(":")[0], Dep(STARTED, path, implicit="volumes_from"))
    return out


def check_graph(ctx: Context, services: dict[str, ServiceSpec], deps: dict[str, dict[str, Dep]]) -> None:
    """Every dependency defined, no cycle (each reported once)."""
    for name, mine in deps.items():
        for dep, spec in mine.items():
            if dep not in services:
                ctx.fail(
                    spec.path,
                    f"{name!r} depends on undefined service {dep!r}{did_you_mean(dep, services)}",
                )
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep, spec in deps.get(node, {}).items():
            if dep not in services:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    ctx.fail(spec.path, f"dependency cycle: {' → '.join(cycle)}")
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in services:
        if name not in state:
            visit(name)


def select(
    ctx: Context, services: dict[str, ServiceSpec], deps: dict[str, dict[str, Dep]], profiles: tuple[str, ...]
) -> dict[str, dict[str, Dep]]:
    """The services of the enabled profiles, each with the dependencies pnr gates it on."""
    wanted = set(profiles)
    enabled = {}
    for name, svc in services.items():
        own = svc.get("profiles") or []
        if not own or "*" in wanted or wanted & set(own):
            enabled[name] = svc
        else:
            ctx.note(
                key_path(key_path("services", name), "profiles"),
                f"not imported: none of its profiles ({', '.join(own)}) is enabled (import with --profile {own[0]}, "
                "or set COMPOSE_PROFILES)",
            )
    if not enabled and services:
        ctx.fail("services", "no service left to import: every service is in a profile not enabled; give --profile")
    active: dict[str, dict[str, Dep]] = {}
    for name in enabled:
        active[name] = {}
        for dep, spec in deps[name].items():
            if dep in enabled:
                active[name][dep] = spec
                _note_waits(ctx, name, dep, spec)
            elif dep in services:  # an undefined one is reported by check_graph
                _disabled_dep(ctx, name, dep, spec, services[dep].get("profiles") or [])
    return active


def _note_waits(ctx: Context, name: str, dep: str, spec: Dep) -> None:
    """How pnr's wait for an enabled dependency differs from compose's."""
    if not spec.required:
        ctx.note(
            key_path(spec.path, "required"),
            f"pnr waits for {dep!r} like for a required dependency: if {dep!r} fails, "
            f"{name!r} does not start (compose would start it anyway)",
        )
    if spec.restart and spec.implicit is None:
        ctx.note(
            key_path(spec.path, "restart"),
            f"pnr does not restart {name!r} when {dep!r} is restarted by hand; in watch mode "
            "(pnr up --watch) the closest is on_dependency_lost: restart",
        )
    if spec.implicit:
        ctx.note(spec.path, f"{name!r} starts after {dep!r} has started (implied by {spec.implicit})")


def _disabled_dep(ctx: Context, name: str, dep: str, spec: Dep, profiles: list[str]) -> None:
    listed = ", ".join(profiles)
    if spec.required:
        ctx.fail(
            spec.path,
            f"{name!r} needs {dep!r}, which is only in profiles not enabled ({listed}): "
            "enable one with --profile, or set required: false",
        )
    else:
        ctx.note(
            spec.path,
            f"{dep!r} is not imported (profiles {listed} not enabled) and required is false: "
            f"{name!r} does not wait for it",
        )


def topological(active: dict[str, dict[str, Dep]]) -> list[str]:
    """Services in an order where each comes after its dependencies (file order among equals)."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(active)
    while pending:
        ready = [name for name in pending if all(dep in done for dep in active[name])]
        if not ready:  # cannot happen: cycles were refused
            ready = pending[:1]
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [name for name in pending if name not in done]
    return order
