"""The `docker` kind: the image's own HEALTHCHECK says healthy."""

from __future__ import annotations

from typing import Any

from pnr.probes.base import NeverReady, Probe, ProbeContext, call_with_timeout, snippet, timing_of


class DockerProbe(Probe):
    """Ready when the image's HEALTHCHECK reports healthy. `unhealthy` is an observation, not the end:
    services often report unhealthy while warming up, so only the deadline (or failure_threshold) ends it."""

    kind = "docker"

    @classmethod
    def from_check(cls, check: Any, ctx: ProbeContext) -> DockerProbe:
        return cls(ctx.engine, ctx.container_id, **timing_of(check))

    def __init__(self, engine: Any, container_id: str, **timing: Any) -> None:
        super().__init__(**timing)
        self.engine = engine
        self.container_id = container_id

    def describe(self) -> str:
        return f"docker HEALTHCHECK of {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        finished, result = call_with_timeout(lambda: self.engine.health(self.container_id), self.timeout)
        if not finished:
            return False, f"the engine did not answer within {self.timeout:g}s"
        if isinstance(result, Exception):
            return False, f"cannot inspect the container: {snippet(str(result))}"
        status, last = result
        if status is None:
            raise NeverReady("the image defines no HEALTHCHECK: add one to the image, or use another probe type")
        detail = f"; last check: {snippet(last, 160)}" if last else ""
        if status == "healthy":
            return True, f"health is healthy{detail}"
        return False, f"health is {status}{detail}"
