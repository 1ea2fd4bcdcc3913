"""Operations outside a bring-up: tear-down and status. They read the plan, the engine and the store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pnr.engines import LABEL_CHUNK, ContainerState, Engine, decide, image_ref
from pnr.lifecycle.cpux import CpuxRun
from pnr.model import Plan
from pnr.runtime import ChunkStateFile, SignalStore, read_state, remove_domain_files


def tear_down_domain(plan: Plan, engine: Engine, runtime_dir: Path, volumes: bool = False) -> dict[str, Any]:
    """Stop and remove the domain's containers (reverse dependency order), its network and its own runtime
    values. Only objects labelled with this domain are touched. Safe to run from any state, twice too."""
    engine.ping()
    domain = plan.domain.name
    removed = []
    for group in _reverse_levels(plan, engine.owned_containers(domain)):
        # one level at a time, dependents first; within a level in parallel (a slow stop costs once, not per container)
        with ThreadPoolExecutor(max_workers=min(16, len(group))) as pool:
            list(pool.map(lambda state: _stop_and_remove(engine, state), group))
        removed.extend(sorted(state.name for state in group))
    networks = []
    for net in engine.owned_networks(domain):
        engine.remove_network(net["Id"])
        networks.append(net["Name"])
    vols = []
    if volumes:
        for vol in engine.owned_volumes(domain):
            engine.remove_volume(vol)
            vols.append(vol)
    remove_domain_files(runtime_dir, domain)
    return {"domain": domain, "containers": removed, "networks": networks, "volumes": vols}


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


def _stop_and_remove(engine: Engine, state: ContainerState) -> None:
    if state.running:
        engine.stop(state.id)
    engine.remove(state.id)


def domain_status(plan: Plan, engine: Engine | None, runtime_dir: Path) -> dict[str, Any]:
    """Truth values, chunk states and containers; `engine=None` when no engine answers."""
    domain = plan.domain.name
    state, problems = read_state(runtime_dir, domain)
    state_file = ChunkStateFile(runtime_dir, domain)
    recorded = state_file.chunks()
    run_alive = state_file.run_alive()
    containers = {c.labels.get(LABEL_CHUNK): c for c in engine.owned_containers(domain)} if engine else {}
    chunks: dict[str, Any] = {}
    for name, chunk in plan.chunks.items():
        rec = recorded.get(name, {})
        cont = containers.get(name)
        phase = rec.get("phase")
        flowout_holds = all(state.get(s) is not None and state[s].tv == p.tv for s, p in chunk.flowout.items())
        if phase == "failed":
            status = "failed"
        elif cont is not None and not cont.running:
            status = "stopped"
        elif cont is not None and flowout_holds and phase in (None, "ready", "blocked"):
            status = "completed"
        elif cont is not None:
            status = "executing"
        elif phase == "waiting" and run_alive:
            status = "waiting"
        else:
            status = "ready"  # not started (the seed's initial status)
        detail = rec.get("detail") or None
        if cont is None and engine is not None and phase in ("starting", "probing", "ready") and not run_alive:
            detail = f"container {chunk.container.name} is gone (removed outside pnr?); `pnr up` recreates it"
        chunks[name] = {
            "status": status,
            "container": cont.name if cont else None,
            "container_id": cont.id if cont else None,
            "cpux": plan.refs[name].cpux,
            "phase": phase,
            "detail": detail,
        }
    return {
        "domain": domain,
        "signals": {name: value.model_dump() for name, value in sorted(state.items())},
        "chunks": chunks,
        "runtime_dir": str(runtime_dir),
        "problems": problems,
        "engine": engine is not None,
    }


def plan_actions(
    plan: Plan, engine: Engine, config_path: str, runtime_dir: Path, force: bool = False
) -> list[dict[str, Any]]:
    """What `pnr up` would do to each chunk's container (create / reuse / recreate, with reasons), touching nothing."""
    engine.ping()
    store = SignalStore(runtime_dir, plan.domain.name)
    rows: list[dict[str, Any]] = []
    for cpux in plan.cpux_order:
        run = CpuxRun(
            plan=plan,
            cpux=cpux,
            store=store,
            engine=engine,
            config_path=config_path,
            timeout_seconds=1,
            force_recreate=force,
        )
        for name in run.names:
            chunk = plan.chunks[name]
            container = chunk.container.name
            ref = image_ref(plan.domain.name, chunk)
            image = engine.image_id(ref)
            existing = engine.inspect(container)
            if image is None:
                how = "built from " + chunk.container.build_path if chunk.container.build_path else "pulled"
                action = "create" if existing is None else "recreate"
                rows.append(
                    {
                        "chunk": name,
                        "container": container,
                        "action": action,
                        "reasons": [f"image {ref} would be {how}"],
                    }
                )
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
            rows.append({"chunk": name, "container": container, "action": decision.action, "reasons": decision.reasons})
    return rows
