"""Operations outside a bring-up: tear-down, what a bring-up would do (dry run). They read the plan, the engines
and the store.

Each takes "the engine" as a bring-up does: an `EngineSet`, or the environment's `Engine` (the plan's own
`engines` are added to it). An engine that does not answer is reported by name; what the others hold is still
shown (status) or removed (down), and a later `pnr down` finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pnr.engines import LABEL_CHUNK, LABEL_RUN, ContainerState, Engine, EngineSet, decide, image_ref, other_configs
from pnr.engines.engineset import EngineSource
from pnr.engines.protocol import ContainerEngine
from pnr.exceptions import EngineUnreachable
from pnr.lifecycle.cpux import domain_runs, other_config_error
from pnr.model import Plan, load_plan
from pnr.records import DryRun, PlannedAction
from pnr.runtime import SignalStore, remove_domain_files
from pnr.settings import resolve_runtime_dir

# Containers stopped and removed at once by `pnr down`. Docker 20.10 loses count of a network's endpoints when
# many of its containers go at once: the network then refuses removal ("has active endpoints", with none left)
# until the engine restarts. Hundreds of containers removed 8 or 16 at once left such a network; 4 at once did not.
DOWN_PARALLEL = 4


def tear_down_domain(
    plan: Plan,
    engine: EngineSource,
    runtime_dir: Path,
    volumes: bool = False,
    on_removed: Callable[[str, str], None] | None = None,
    stop_timeout: float | None = None,
    force: bool = False,
) -> dict[str, str | list[str]]:
    """Stop and remove the domain's containers (reverse dependency order, across its engines), its network on
    each engine and its own runtime values. Only objects labelled with this domain are touched. Safe to run from
    any state, twice too. An engine that does not answer: the others are cleaned, then EngineUnreachable says
    what was removed and what is left (the runtime values stay until a later run reaches every engine).
    `on_removed(kind, name)` is told of each container, network and volume as it goes (from worker threads).
    `stop_timeout`: seconds each container gets after its stop signal before SIGKILL, instead of its own
    stop_grace_period_seconds (`docker compose down -t`). The domain's containers must have been made from the
    plan's config file (ConfigError naming the other file, nothing removed) unless `force`."""
    told = on_removed or (lambda kind, name: None)
    engines = engine.engine_set(plan)
    lost = engines.unreachable()
    if len(lost) == len(engines):
        engines.raise_unreachable(lost)  # nothing answers: raise as a single engine always did
    reachable = [(name, e) for name, e in engines.items() if name not in lost]
    domain = plan.domain.name
    removed = []
    owned = [(e, state) for _name, e in reachable for state in e.owned_containers(domain)]
    if not force:
        _refuse_other_configs(plan, [state for _e, state in owned])
    by_state = {id(state): e for e, state in owned}
    for group in _reverse_levels(plan, [state for _e, state in owned]):
        # one level at a time, dependents first; within a level in parallel (a slow stop costs once, not per container)
        with ThreadPoolExecutor(max_workers=min(DOWN_PARALLEL, len(group))) as pool:
            list(pool.map(lambda state: _stop_and_remove(by_state[id(state)], state, told, stop_timeout), group))
        removed.extend(sorted(state.name for state in group))
    networks, vols = _remove_networks_and_volumes(domain, reachable, len(engines) > 1, volumes, told)
    report: dict[str, str | list[str]] = {
        "domain": domain,
        "containers": removed,
        "networks": networks,
        "volumes": vols,
    }
    if lost:
        raise EngineUnreachable(_partial_down_message(engines, report, lost), next(iter(lost)))
    remove_domain_files(runtime_dir, domain)
    return report


def _refuse_other_configs(plan: Plan, owned: list[ContainerState]) -> None:
    """ConfigError naming the other file when the domain's containers were made from another config file."""
    if plan.source.startswith("<"):
        return
    domain, this = plan.domain.name, str(Path(plan.source).resolve())
    others = other_configs([state.labels for state in owned], domain, this)
    if others:
        fix = (
            f"remove it with `pnr down {sorted(others)[0]}`, or with `pnr down --force {plan.source}` anyway "
            "(the pnr-down flow: force=true)"
        )
        raise other_config_error(domain, plan.source, others, fix, this)


def _remove_networks_and_volumes(
    domain: str,
    reachable: list[tuple[str, ContainerEngine]],
    several: bool,
    volumes: bool,
    told: Callable[[str, str], None],
) -> tuple[list[str], list[str]]:
    """The domain's networks (and with `volumes` its volumes) on each engine; their names, with the engine's
    when the domain has several."""
    networks: list[str] = []
    vols: list[str] = []
    for ename, e in reachable:
        on = f" (engine {ename})" if several else ""
        for net in e.owned_networks(domain):
            e.remove_network(net["Id"])
            networks.append(net["Name"] + on)
            told("network", networks[-1])
        if volumes:
            for vol in e.owned_volumes(domain):
                e.remove_volume(vol)
                vols.append(vol + on)
                told("volume", vols[-1])
    return networks, vols


def remove_started_by(plan: Plan, engine: EngineSource, run_ids: set[str]) -> tuple[list[str], list[str]]:
    """Remove the domain's containers that the flow runs `run_ids` started (label io.pnr.flow-run-id), dependents
    first, on every engine that answers. Returns (removed, left): the names removed, and what of the domain is
    still there (its containers; an engine that does not answer is named instead)."""
    engines = engine.engine_set(plan)
    lost = engines.unreachable()
    reachable = [e for name, e in engines.items() if name not in lost]
    domain = plan.domain.name
    rank = {n: i for i, n in enumerate(n for c in plan.cpux_order for n in plan.chunks_of(c))}
    ours = [(e, c) for e in reachable for c in e.owned_containers(domain) if c.labels.get(LABEL_RUN) in run_ids]
    ours.sort(key=lambda ec: rank.get(ec[1].labels.get(LABEL_CHUNK, ""), -1), reverse=True)  # dependents first
    for e, c in ours:
        e.remove(c.id)
    left = [c.name for e in reachable for c in e.owned_containers(domain)]
    left += [f"whatever is on {engines.describe(name)} (it does not answer)" for name in lost]
    return [c.name for _e, c in ours], left


def _partial_down_message(engines: EngineSet, report: dict[str, str | list[str]], lost: dict[str, str]) -> str:
    done = (
        f"removed {len(report['containers'])} container(s) ({', '.join(report['containers']) or '-'}) and "
        f"{len(report['networks'])} network(s) on the engines that answer"
    )
    lines = [f"down {report['domain']}: {done}; could not reach:"]
    lines += [f"  {engines.describe(name)}: {why}" for name, why in lost.items()]
    lines.append("  what is on it is left, and so are the runtime values; run `pnr down` again once it answers")
    return "\n".join(lines)


def _reverse_levels(plan: Plan, owned: list[ContainerState]) -> list[list[ContainerState]]:
    """Containers grouped by their chunk's (cpux, level), last level first; unknown chunks (no longer in
    the config) come first of all."""
    rank: dict[str, tuple[int, int]] = {}
    for ci, cpux in enumerate(plan.cpux_order):
        for li, level in enumerate(plan.levels[cpux]):
            rank.update({name: (ci, li) for name in level})
    groups: dict[tuple[int, int], list[ContainerState]] = {}
    for state in owned:
        groups.setdefault(rank.get(state.labels.get(LABEL_CHUNK, ""), (len(plan.cpux_order), 0)), []).append(state)
    return [groups[key] for key in sorted(groups, reverse=True)]


def _stop_and_remove(
    engine: ContainerEngine, state: ContainerState, told: Callable[[str, str], None], timeout: float | None
) -> None:
    if state.running:
        engine.stop(state.id, timeout)
    engine.remove(state.id)
    told("container", state.name)


def dry_run(config_path: str, runtime_dir: Path | None, force: bool = False) -> DryRun:
    """What `pnr up CONFIG --dry-run` shows: the config planned (ConfigError when bad), then `plan_actions` on
    the environment's engine and the runtime folder (`runtime_dir`, else the setting's)."""
    plan = load_plan(config_path)
    actions = plan_actions(plan, Engine(), config_path, resolve_runtime_dir(runtime_dir), force=force)
    return DryRun(plan.domain.name, actions)


def plan_actions(
    plan: Plan, engine: EngineSource, config_path: str, runtime_dir: Path, force: bool = False
) -> list[PlannedAction]:
    """What `pnr up` would do to each chunk's container (create / reuse / recreate, with reasons), touching nothing.
    Every chunk is refused when another config file of the same domain name brought the domain up (unless
    `force`: `pnr up --force-recreate` takes it over)."""
    engines = engine.engine_set(plan)
    engines.ping_all()
    store = SignalStore(runtime_dir, plan.domain.name)
    this = str(Path(config_path).resolve())
    labels = [c.labels for _name, e in engines.items() for c in e.owned_containers(plan.domain.name)]
    others = {} if force else other_configs(labels, plan.domain.name, this)
    if others:
        files = ", ".join(sorted(others))
        why = f"domain {plan.domain.name} was brought up from {files} (--force-recreate takes it over)"
        return [
            PlannedAction(n, plan.chunks[n].container.name, "refuse", [why])
            for c in plan.cpux_order
            for n in plan.chunks_of(c)
        ]
    rows: list[PlannedAction] = []
    for run in domain_runs(plan, store, engines, config_path, timeout_seconds=1, force_recreate=force):
        for name in run.names:
            chunk = plan.chunks[name]
            container = chunk.container.name
            ref = image_ref(plan.domain.name, chunk)
            on = run.engine_of(name)
            image = on.image_id(ref)
            existing = on.inspect(container)
            if image is None:
                how = "built from " + chunk.container.build_path if chunk.container.build_path else "pulled"
                action = "create" if existing is None else "recreate"
                rows.append(PlannedAction(name, container, action, [f"image {ref} would be {how}"]))
                continue
            run.images[name] = image
            decision = decide(
                existing,
                run.drivers[name].desired(),
                domain=plan.domain.name,
                chunk=name,
                container=container,
                force=force,
            )
            rows.append(PlannedAction(name, container, decision.action, list(decision.reasons)))
    return rows
