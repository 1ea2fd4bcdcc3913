"""Readiness probes: one small class per kind behind a base that owns timing.

"Not ready yet" (connection refused, wrong status) is retried every `interval_seconds` until
`deadline_seconds`; "will never be ready" (the container exited) fails at once. The first attempt runs
immediately. The result carries the last observation for the failure message.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from pnr.config import HttpCheck, TcpCheck


class ContainerGone(Exception):
    """Raised by an `alive` callback when the container has exited: stop probing now."""


class Aborted(Exception):
    """Raised by an `alive` callback when the run was aborted."""


@dataclass
class Attempt:
    ok: bool
    observation: str
    seconds: float


@dataclass
class ProbeResult:
    ok: bool
    attempts: int
    elapsed: float
    last: str
    history: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    host: str
    port: int


class Probe:
    """Base: owns interval, timeout and deadline; subclasses implement one `attempt`."""

    def __init__(self, *, interval: float, timeout: float, deadline: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.deadline = deadline

    def describe(self) -> str:
        raise NotImplementedError

    def attempt(self) -> tuple[bool, str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what attempts keep open (clients)."""

    def run(
        self,
        alive: Callable[[], None] = lambda: None,
        on_attempt: Callable[[int, Attempt], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ProbeResult:
        """Attempt until success or deadline. `alive()` raises ContainerGone/Aborted to stop early."""
        started = time.monotonic()
        history: list[Attempt] = []
        try:
            while True:
                alive()
                t0 = time.monotonic()
                ok, observation = self.attempt()
                spent = time.monotonic() - t0
                attempt = Attempt(ok, observation, spent)
                history.append(attempt)
                del history[:-20]
                if on_attempt is not None:
                    on_attempt(len(history), attempt)
                elapsed = time.monotonic() - started
                if ok:
                    return ProbeResult(True, len(history), elapsed, observation, history)
                if elapsed + self.interval > self.deadline:
                    return ProbeResult(False, len(history), elapsed, f"{observation} (gave up after {elapsed:.1f}s, deadline {self.deadline:g}s)", history)
                sleep(self.interval)
        finally:
            self.close()


class TcpProbe(Probe):
    """Ready when a connection is accepted and not closed at once by the peer.

    Docker's userland proxy accepts a connection on a published port even while nothing listens in the
    container, then closes it; a short read tells that apart from a real server, which keeps it open.
    """

    EOF_WINDOW = 0.05

    def __init__(self, target: Target, **timing: float) -> None:
        super().__init__(**timing)
        self.target = target

    def describe(self) -> str:
        return f"tcp {self.target.host}:{self.target.port}"

    def attempt(self) -> tuple[bool, str]:
        try:
            with socket.create_connection((self.target.host, self.target.port), timeout=self.timeout) as sock:
                sock.settimeout(self.EOF_WINDOW)
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    return True, f"connected to {self.target.host}:{self.target.port}"
                except OSError as exc:
                    return False, f"connection reset by {self.target.host}:{self.target.port} ({exc.strerror or exc})"
                if data:
                    return True, f"connected to {self.target.host}:{self.target.port} (server spoke first)"
                return False, f"{self.target.host}:{self.target.port} accepted and closed the connection (nothing listening behind the published port yet)"
        except TimeoutError:
            return False, f"no answer from {self.target.host}:{self.target.port} within {self.timeout:g}s"
        except OSError as exc:
            return False, f"cannot connect to {self.target.host}:{self.target.port}: {exc.strerror or exc}"


class HttpProbe(Probe):
    """Ready when GET answers the expected status (and the body contains a substring, if asked)."""

    def __init__(self, target: Target, check: HttpCheck, transport: httpx.BaseTransport | None = None, **timing: float) -> None:
        super().__init__(**timing)
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.url = f"http://{host}:{target.port}{check.path}"
        self.expected = check.expected_code
        self.body_contains = check.body_contains
        self._client = httpx.Client(timeout=self.timeout, transport=transport, follow_redirects=False, trust_env=False)

    def describe(self) -> str:
        return f"http GET {self.url} expecting {self.expected}"

    def attempt(self) -> tuple[bool, str]:
        try:
            response = self._client.get(self.url)
        except httpx.TimeoutException:
            return False, f"GET {self.url}: no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return False, f"GET {self.url}: {type(exc).__name__}: {str(exc) or 'connection failed'}"
        snippet = response.text[:200].replace("\n", " ")
        if response.status_code != self.expected:
            return False, f"GET {self.url} -> {response.status_code} (expected {self.expected}); body: {snippet!r}"
        if self.body_contains is not None and self.body_contains not in response.text:
            return False, f"GET {self.url} -> {response.status_code} but body lacks {self.body_contains!r}; body: {snippet!r}"
        return True, f"GET {self.url} -> {response.status_code}"

    def close(self) -> None:
        self._client.close()


def make_probe(check: TcpCheck | HttpCheck, target: Target, transport: httpx.BaseTransport | None = None) -> Probe:
    timing = {"interval": check.interval_seconds, "timeout": check.timeout_seconds, "deadline": check.deadline_seconds}
    if isinstance(check, HttpCheck):
        return HttpProbe(target, check, transport=transport, **timing)
    return TcpProbe(target, **timing)
