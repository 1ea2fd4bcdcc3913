"""The base of what watches a bring-up from the Prefect side (artifacts, events): it sees the plan, the CPUXs
brought up, the signal store and the run's control; it never steers the run."""

from __future__ import annotations

from pnr.lifecycle import RunControl
from pnr.model import Plan
from pnr.runtime import SignalStore


class RunObserver:
    def __init__(self, plan: Plan, cpuxs: list[str], store: SignalStore, control: RunControl) -> None:
        self.plan = plan
        self.cpuxs = cpuxs
        self.store = store
        self.control = control
        self.domain = plan.domain.name
