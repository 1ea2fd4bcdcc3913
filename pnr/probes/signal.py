"""The `signal` kind: a signal in the runtime state has the wanted truth value (often written by the
container itself into the mounted runtime folder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from pnr.model import CheckBase, SignalCheck
from pnr.probes.base import NeverReady, Probe, ProbeContext, Timing, timing_of

if TYPE_CHECKING:
    from pnr.runtime import SignalStore


class SignalProbe(Probe):
    """Ready when the signal has the wanted truth value in the runtime state (files re-read each attempt)."""

    kind = "signal"

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> SignalProbe:
        assert isinstance(check, SignalCheck)
        return cls(ctx.store, check, **timing_of(check))

    def __init__(self, store: SignalStore | None, check: SignalCheck, **timing: Unpack[Timing]) -> None:
        super().__init__(**timing)
        self.store = store
        self.check = check

    def describe(self) -> str:
        return f"signal {self.check.signal} = {self.check.tv}"

    def attempt(self) -> tuple[bool, str]:
        if self.store is None:
            raise NeverReady("no signal store to read (signal probes run inside a pnr run)")
        self.store.refresh()
        value = self.store.get(self.check.signal)
        if value.tv == self.check.tv:
            return True, f"{self.check.signal} is {value.tv}"
        problems = "; ".join(f"{name}: {why}" for name, why in sorted(getattr(self.store, "problems", {}).items()))
        note = f"; unreadable runtime files: {problems}" if problems else ""
        return False, f"{self.check.signal} is {value.tv} (waiting for {self.check.tv}){note}"
