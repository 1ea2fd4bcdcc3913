"""The `log` kind: a regular expression seen N times in the container's logs."""

from __future__ import annotations

import re
from typing import Unpack

from pnr.engines.protocol import ContainerEngine
from pnr.model import LogCheck
from pnr.probes.base import CallTimedOut, ContainerProbe, Timing, call_with_timeout, snippet


class LogProbe(ContainerProbe):
    """Ready when a regex (per line) has matched `count` times in the container's logs since it started."""

    kind = "log"
    check: LogCheck

    def __init__(self, engine: ContainerEngine, container_id: str, check: LogCheck, **timing: Unpack[Timing]) -> None:
        super().__init__(engine, container_id, check, **timing)
        self._regex = re.compile(check.pattern, re.MULTILINE)

    def describe(self) -> str:
        times = f" {self.check.count} times" if self.check.count > 1 else ""
        return f"log /{self.check.pattern}/{times} in {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        stream = self.check.stream
        try:
            text = call_with_timeout(
                lambda: self.engine.logs_text(self.container_id, stdout=stream != "stderr", stderr=stream != "stdout"),
                self.timeout,
            )
        except CallTimedOut:
            return False, f"reading logs took longer than {self.timeout:g}s"
        except Exception as exc:
            return False, f"cannot read logs: {snippet(str(exc))}"
        seen = sum(1 for _ in self._regex.finditer(text))
        if seen >= self.check.count:
            return True, f"/{self.check.pattern}/ seen {seen} time(s)"
        lines = text.rstrip().splitlines()
        last = f"; last line: {snippet(lines[-1], 120)!r}" if lines else "; no log output yet"
        return False, f"/{self.check.pattern}/ seen {seen} of {self.check.count} time(s){last}"
