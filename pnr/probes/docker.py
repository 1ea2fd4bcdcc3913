"""The `docker` kind: the image's own HEALTHCHECK says healthy."""

from __future__ import annotations

from pnr.engines.dockerapi import HEALTH_NEVER_RUN
from pnr.probes.base import CallTimedOut, ContainerProbe, NeverReady, call_with_timeout, snippet


class DockerProbe(ContainerProbe):
    """Ready when the image's HEALTHCHECK reports healthy. `unhealthy` is an observation, not the end:
    services often report unhealthy while warming up, so only the deadline (or failure_threshold) ends it."""

    kind = "docker"

    def describe(self) -> str:
        return f"docker HEALTHCHECK of {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        try:
            status, last = call_with_timeout(lambda: self.engine.health(self.container_id), self.timeout)
        except CallTimedOut:
            return False, f"the engine did not answer within {self.timeout:g}s"
        except Exception as exc:
            return False, f"cannot inspect the container: {snippet(str(exc))}"
        if status is None:
            raise NeverReady("the image defines no HEALTHCHECK: add one to the image, or use another probe type")
        if status == HEALTH_NEVER_RUN:
            raise NeverReady(last)
        detail = f"; last check: {snippet(last, 160)}" if last else ""
        if status == "healthy":
            return True, f"health is healthy{detail}"
        return False, f"health is {status}{detail}"
