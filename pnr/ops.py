"""Operations outside a bring-up: tear-down and status. They read the plan, the engine and the store."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from pnr.converge import decide
from pnr.engine import LABEL_CHUNK, Engine, image_ref
from pnr.plan import Plan
from pnr.signals import META_DIR, own_file_name, read_state


def tear_down_domain(plan: Plan, engine: Engine, runtime_dir: Path, volumes: bool = False) -> dict[str, Any]:
    """Stop and remove the domain's containers (reverse dependency order), its network and its own runtime
    values. Only objects labelled with this domain are touched. Safe to run from any state, twice too."""
    engine.ping()
    domain = plan.domain.name
    order = {name: i for i, name in enumerate(n for c in plan.cpux_order for n in plan.chunks_of(c))}
    owned = engine.owned_containers(domain)
    owned.sort(key=lambda c: -order.get(c.labels.get(LABEL_CHUNK, ""), len(order)))
    removed = []
    for state in owned:
        if state.running:
            engine.stop(state.id)
        engine.remove(state.id)
        removed.append(state.name)
    networks = []
    for net in engine.owned_networks(domain):
        engine.remove_network(net["Id"])
        networks.append(net["Name"])
    vols = []
    if volumes:
        for vol in engine.owned_volumes(domain):
            engine.remove_volume(vol)
            vols.append(vol)
    for path in (runtime_dir / own_file_name(domain), runtime_dir / META_DIR / f"{domain}.chunks.json"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return {"domain": domain, "containers": removed, "networks": networks, "volumes": vols}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def domain_status(plan: Plan, engine: Engine | None, runtime_dir: Path) -> dict[str, Any]:
    """Truth values, chunk states and containers; `engine=None` when no engine answers."""
    domain = plan.domain.name
    state, problems = read_state(runtime_dir, domain)
    recorded: dict[str, Any] = {}
    run_alive = False
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((runtime_dir / META_DIR / f"{domain}.chunks.json").read_text())
        recorded = meta.get("chunks", {})
        run_alive = _pid_alive(meta.get("pid")) and meta.get("pid") != os.getpid()
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
        chunks[name] = {
            "status": status,
            "container": cont.name if cont else None,
            "container_id": cont.id if cont else None,
            "cpux": plan.refs[name].cpux,
            "phase": phase,
            "detail": rec.get("detail") or None,
        }
    return {
        "domain": domain,
        "signals": {name: value.model_dump() for name, value in sorted(state.items())},
        "chunks": chunks,
        "runtime_dir": str(runtime_dir),
        "problems": problems,
        "engine": engine is not None,
    }


def plan_actions(plan: Plan, engine: Engine, config_path: str, runtime_dir: Path, force: bool = False) -> list[dict[str, Any]]:
    """What `pnr up` would do to each chunk's container (create / reuse / recreate, with reasons), touching nothing."""
    from pnr.run import CpuxRun
    from pnr.signals import SignalStore

    engine.ping()
    store = SignalStore(runtime_dir, plan.domain.name)
    rows: list[dict[str, Any]] = []
    for cpux in plan.cpux_order:
        run = CpuxRun(plan=plan, cpux=cpux, store=store, engine=engine, config_path=config_path, timeout_seconds=1,
                      force_recreate=force)
        for name in run.names:
            chunk = plan.chunks[name]
            container = chunk.container.name
            ref = image_ref(plan.domain.name, chunk)
            image = engine.image_id(ref)
            existing = engine.inspect(container)
            if image is None:
                how = "built from " + chunk.container.build_path if chunk.container.build_path else "pulled"
                action = "create" if existing is None else "recreate"
                rows.append({"chunk": name, "container": container, "action": action, "reasons": [f"image {ref} would be {how}"]})
                continue
            run.images[name] = image
            decision = decide(existing, run.desired(name), domain=plan.domain.name, chunk=name, container=container, force=force)
            rows.append({"chunk": name, "container": container, "action": decision.action, "reasons": decision.reasons})
    return rows
