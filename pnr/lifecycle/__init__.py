"""The lifecycle layer: how a domain comes up, stays up (watch) and goes down.

control.py   RunControl: one run's observers and its interrupt (no process-wide registry)
state.py     Phase, ChunkProgress, CpuxState: what a CPUX run knows while it runs
chunk.py     ChunkDriver: one chunk's converge → start → probe → signals, and its failure messages
early.py     EarlyStart: a bring-up on pnr's own gates while pnr's Prefect server starts, taken over by the flow run
cpux.py      CpuxRun: the scheduler (gates, supervision, stall and timeout)
watch.py     Watcher: the watch-mode state machine, driving the same chunk drivers
ops.py       tear-down, dry-run: operations outside a bring-up; status.py: a domain's status
report.py    what a finished bring-up shows: the status table and the timeline (wherever it ran)
logs.py      the containers' output (`pnr logs`): sources, merged lines, following
restart.py   one chunk restarted through a Watcher (`pnr restart`)
timeline.py  the readiness timeline as an SVG Gantt chart (pure), the critical path
"""

from pnr.lifecycle.chunk import ChunkDriver
from pnr.lifecycle.control import Prepared, PreparingAhead, RunControl, current_control, use_control
from pnr.lifecycle.cpux import (
    ChunkBlocked,
    CpuxRun,
    GateClosed,
    gate_attempts,
    prepare_ahead,
    start_preparing,
)
from pnr.lifecycle.early import EarlyStart
from pnr.lifecycle.ops import plan_actions, remove_started_by, tear_down_domain
from pnr.lifecycle.state import ChunkProgress, CpuxState, EarlyFacts, Phase
from pnr.lifecycle.status import domain_status
from pnr.lifecycle.watch import WATCH_CANCELLED, Watcher
from pnr.records import ChunkStatus, DomainStatus, EngineStatus, ProgressEvent, RunNote

__all__ = [
    "WATCH_CANCELLED",
    "ChunkBlocked",
    "ChunkDriver",
    "ChunkProgress",
    "ChunkStatus",
    "CpuxRun",
    "CpuxState",
    "DomainStatus",
    "EarlyFacts",
    "EarlyStart",
    "EngineStatus",
    "GateClosed",
    "Phase",
    "Prepared",
    "PreparingAhead",
    "ProgressEvent",
    "RunControl",
    "RunNote",
    "Watcher",
    "current_control",
    "domain_status",
    "gate_attempts",
    "plan_actions",
    "prepare_ahead",
    "remove_started_by",
    "start_preparing",
    "tear_down_domain",
    "use_control",
]
