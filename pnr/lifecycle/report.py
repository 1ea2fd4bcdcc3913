"""What a finished bring-up shows besides how it ended: the domain's status table and the run's timeline. Built
where the run executed (this process or the resident runner) from the plan it ran, so the caller never reads
the config again."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path

from pnr.engines import ContainerState, Engine
from pnr.lifecycle.status import domain_status
from pnr.lifecycle.timeline import timeline_chunks
from pnr.model import Plan
from pnr.records import DomainStatus, RunTimeline
from pnr.runtime import ChunkStateFile

ChunkRows = Mapping[str, Mapping[str, object]]  # a CPUX's chunks in a bring-up's result: name → its progress


def run_report(
    plan: Plan,
    runtime_dir: Path,
    cpuxs: Mapping[str, ChunkRows] | None,
    *,
    engine_lost: bool = False,
    watched: bool = False,
) -> tuple[DomainStatus | None, RunTimeline]:
    """The status table and the timeline of a bring-up of `plan`. `cpuxs`: the chunks of its result (every chunk
    ready), None for a run that failed: then the chunk-state file it left is read, up to now. `engine_lost`:
    the run ended because an engine stopped answering (the table then asks no engine: that would make the
    user wait for another ping); `watched`: a watch ran after the bring-up (its containers may have changed)."""
    known = None if cpuxs is None or watched else ready_containers(cpuxs)
    status = None
    with contextlib.suppress(Exception):  # the table is extra: how the run ended is told without it
        status = domain_status(plan, None if engine_lost else Engine(), runtime_dir, known)
    if cpuxs is not None:
        rows = {name: row for chunks in cpuxs.values() for name, row in chunks.items()}
        timeline = RunTimeline(plan.domain.name, timeline_chunks(rows), plan.depends_on)
    else:
        rows = ChunkStateFile(runtime_dir, plan.domain.name).chunks()
        timeline = RunTimeline(plan.domain.name, timeline_chunks(rows), plan.depends_on, time.time())
    return status, timeline


def ready_containers(cpuxs: Mapping[str, ChunkRows]) -> dict[str | None, ContainerState]:
    """The containers of a bring-up's result (every chunk ready, so running), by chunk: its status table then
    needs no engine listing (at 500 chunks, listing them took ~0.6 s between the outcome and the report)."""
    known: dict[str | None, ContainerState] = {}
    for chunks in cpuxs.values():
        for chunk, row in chunks.items():
            cid, name = row.get("container_id"), row.get("container")
            if row.get("phase") == "ready" and isinstance(cid, str) and cid:
                known[chunk] = ContainerState(cid, str(name), "running", True, None, {})
    return known
