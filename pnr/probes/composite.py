"""The composite kinds `all` and `any`: children of any kind, the outer check owning timing."""

from __future__ import annotations

from typing import Unpack

from pnr.model import AllCheck, AnyCheck, CheckBase
from pnr.probes.base import NeverReady, Probe, ProbeContext, Timing, timing_of


class _CompositeProbe(Probe):
    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> Probe:
        from pnr.probes.registry import make_probe  # the children may be of any kind

        assert isinstance(check, AllCheck | AnyCheck)
        return cls([make_probe(child, ctx) for child in check.checks], **timing_of(check))

    def __init__(self, children: list[Probe], **timing: Unpack[Timing]) -> None:
        super().__init__(**timing)
        self.children = children

    def close(self) -> None:
        for child in self.children:
            child.close()


class AllProbe(_CompositeProbe):
    """Ready when every child has passed once; a passed child is not attempted again."""

    kind = "all"

    def __init__(self, children: list[Probe], **timing: Unpack[Timing]) -> None:
        super().__init__(children, **timing)
        self.passed: set[int] = set()

    def describe(self) -> str:
        return "all of [" + "; ".join(c.describe() for c in self.children) + "]"

    def attempt(self) -> tuple[bool, str]:
        pending = []
        for i, child in enumerate(self.children):
            if i in self.passed:
                continue
            ok, observation = child.attempt()  # NeverReady of a child ends the whole probe
            if ok:
                self.passed.add(i)
            else:
                pending.append(observation)
        if not pending:
            return True, f"all {len(self.children)} checks passed"
        return False, f"{len(self.passed)}/{len(self.children)} passed; waiting: " + " | ".join(pending)


class AnyProbe(_CompositeProbe):
    """Ready when one child passes in an attempt. A child that can never be ready drops out."""

    kind = "any"

    def __init__(self, children: list[Probe], **timing: Unpack[Timing]) -> None:
        super().__init__(children, **timing)
        self.dropped: dict[int, str] = {}

    def describe(self) -> str:
        return "any of [" + "; ".join(c.describe() for c in self.children) + "]"

    def attempt(self) -> tuple[bool, str]:
        seen = []
        for i, child in enumerate(self.children):
            if i in self.dropped:
                continue
            try:
                ok, observation = child.attempt()
            except NeverReady as exc:
                self.dropped[i] = str(exc)
                continue
            if ok:
                return True, observation
            seen.append(observation)
        if len(self.dropped) == len(self.children):
            raise NeverReady("no check can ever pass: " + " | ".join(self.dropped.values()))
        return False, "none passed: " + " | ".join(seen)
