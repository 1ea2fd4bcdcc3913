"""The `exec` kind: a command run inside the container exits 0 (and its output matches, if asked)."""

from __future__ import annotations

import re
from typing import Unpack

from pnr.engines.protocol import ContainerEngine
from pnr.model import ExecCheck
from pnr.probes.base import CallTimedOut, ContainerProbe, Timing, call_with_timeout, snippet


class ExecProbe(ContainerProbe):
    """Ready when a command run inside the container exits 0 (and its output matches, if asked)."""

    kind = "exec"
    check: ExecCheck

    def __init__(self, engine: ContainerEngine, container_id: str, check: ExecCheck, **timing: Unpack[Timing]) -> None:
        super().__init__(engine, container_id, check, **timing)
        self.args = check.args()
        self._regex = re.compile(check.output_regex) if check.output_regex is not None else None

    def describe(self) -> str:
        return f"exec {' '.join(self.args)!r} in {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        cmd = " ".join(self.args)
        try:
            code, output = call_with_timeout(lambda: self.engine.exec_run(self.container_id, self.args), self.timeout)
        except CallTimedOut:
            return False, f"`{cmd}` did not exit within {self.timeout:g}s"
        except Exception as exc:
            return False, f"`{cmd}` could not run: {snippet(str(exc))}"
        shown = snippet(output)
        if code != 0:
            return False, f"`{cmd}` exited {code}; output: {shown!r}"
        if self.check.output_contains is not None and self.check.output_contains not in output:
            return False, f"`{cmd}` exited 0 but output lacks {self.check.output_contains!r}; output: {shown!r}"
        if self._regex is not None and not self._regex.search(output):
            return False, f"`{cmd}` exited 0 but output does not match /{self.check.output_regex}/; output: {shown!r}"
        return True, f"`{cmd}` exited 0"
