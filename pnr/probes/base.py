"""The base of every probe kind: timing, thresholds, the result, and what a probe may know of its run.

    Probe.run()  first attempt at once, then one every `interval`; ready after `success_threshold`
                 successes in a row; gives up after `failure_threshold` counted failures in a row
                 (failures inside `start_period` do not count) or at `deadline`.

"Not ready yet" (connection refused, wrong status, unhealthy) is retried until the deadline; "will never be
ready" fails at once: the `alive` callback raises ContainerGone (the container exited), or an attempt raises
NeverReady (e.g. the image has no HEALTHCHECK). The result carries the last observation for the message.
HTTP, socket and engine errors are turned into observations by each kind, never raised out of an attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Required, TypedDict, TypeVar, Unpack

import httpx

from pnr.engines.protocol import ContainerEngine
from pnr.exceptions import PnrError
from pnr.model import CheckBase, PluginCheck, PortBinding, PortCheck

if TYPE_CHECKING:
    from pnr.runtime import SignalStore

BUILTIN_PROBES: dict[str, type[Probe]] = {}  # kind -> class; filled as the kind modules are imported
T = TypeVar("T")


class ContainerGone(Exception):
    """Raised by an `alive` callback when the container has exited: stop probing now."""


class Aborted(Exception):
    """Raised by an `alive` callback when the run was aborted."""


class NeverReady(Exception):
    """Raised by `attempt()` when waiting cannot help (e.g. no HEALTHCHECK in the image): fail at once."""


class CallTimedOut(Exception):
    """Raised by `call_with_timeout` when the call did not return in time."""


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
    history: list[Attempt] = field(default_factory=list)  # the last 20 attempts


@dataclass(frozen=True)
class Target:
    host: str
    port: int


@dataclass
class Streak:
    """Successes and counted failures in a row, against a check's thresholds. One rule for a bring-up's
    probe and for the watch that keeps probing afterwards."""

    success_threshold: int = 1
    failure_threshold: int | None = None
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool, counts: bool = True) -> None:
        """One outcome; a failure with `counts=False` (inside the start period) breaks a success streak only."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes = 0
            if counts:
                self.failures += 1

    def reset(self) -> None:
        self.successes = self.failures = 0

    @property
    def passed(self) -> bool:
        return self.successes >= self.success_threshold

    @property
    def given_up(self) -> bool:
        return self.failure_threshold is not None and self.failures >= self.failure_threshold

    def passed_note(self) -> str:
        return f" ({self.successes} successes in a row)" if self.success_threshold > 1 else ""

    def given_up_note(self) -> str:
        return f"(failed {self.failures} times in a row, failure_threshold {self.failure_threshold})"


def snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call_with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """What `fn()` returns, or raises; CallTimedOut when it has not returned within `timeout` (an engine call that
    hangs is left behind in a daemon thread)."""
    values: list[T] = []
    errors: list[Exception] = []

    def work() -> None:
        try:
            values.append(fn())
        except Exception as exc:  # raised in the caller's thread, for it to turn into an observation
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True, name="pnr-probe-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallTimedOut(f"no answer within {timeout:g}s")
    if errors:
        raise errors[0]
    return values[0]


class Timing(TypedDict, total=False):
    """A probe's timing knobs, as `Probe` takes them (keyword arguments)."""

    interval: Required[float]
    timeout: Required[float]
    deadline: Required[float]
    start_period: float
    success_threshold: int
    failure_threshold: int | None


def timing_of(check: CheckBase) -> Timing:
    """A check's timing knobs as `Probe` keyword arguments."""
    return Timing(
        interval=check.interval_seconds,
        timeout=check.timeout_seconds,
        deadline=check.deadline_seconds,
        start_period=check.start_period_seconds,
        success_threshold=check.success_threshold,
        failure_threshold=check.failure_threshold,
    )


class Probe:
    """Base: owns the timing; a subclass implements one `attempt()` -> (ok, observation).

    A built-in kind sets `kind` (its module in this package is found by `pnr.probes.registry`); a third-party
    kind sets `check_model` (a `PluginCheck` subclass with `type: Literal[kind]`). Both implement `from_check`."""

    kind: ClassVar[str | None] = None  # a built-in kind: the `type` of its check model
    check_model: ClassVar[type[PluginCheck] | None] = None  # a third-party kind: its check model

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            BUILTIN_PROBES[str(cls.kind)] = cls

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        deadline: float,
        start_period: float = 0.0,
        success_threshold: int = 1,
        failure_threshold: int | None = None,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.deadline = deadline
        self.start_period = start_period
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> Probe:
        """Build the probe for a validated check (third-party kinds implement this)."""
        raise NotImplementedError

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
        clock: Callable[[], float] = time.monotonic,
    ) -> ProbeResult:
        """Attempt until ready, given up, or the deadline. `alive()` raises ContainerGone/Aborted to stop early."""
        started = clock()
        history: list[Attempt] = []
        count = 0
        streak = Streak(self.success_threshold, self.failure_threshold)
        try:
            while True:
                alive()
                t0 = clock()
                try:
                    ok, observation = self.attempt()
                except NeverReady as exc:
                    elapsed = clock() - started
                    return ProbeResult(False, count + 1, elapsed, f"{exc} (waiting will not help)", history)
                count += 1
                now = clock()
                attempt = Attempt(ok, observation, now - t0)
                history.append(attempt)
                del history[:-20]
                if on_attempt is not None:
                    on_attempt(count, attempt)
                elapsed = now - started
                streak.record(ok, counts=elapsed >= self.start_period)
                if streak.passed:
                    return ProbeResult(True, count, elapsed, observation + streak.passed_note(), history)
                if streak.given_up:
                    return ProbeResult(False, count, elapsed, f"{observation} {streak.given_up_note()}", history)
                if elapsed + self.interval > self.deadline:
                    return ProbeResult(
                        False,
                        count,
                        elapsed,
                        f"{observation} (gave up after {elapsed:.1f}s, deadline {self.deadline:g}s)",
                        history,
                    )
                sleep(self.interval)
        finally:
            self.close()


@dataclass
class ProbeContext:
    """What a probe may need from its run: the engine, the container, its ports, the domain network and the
    signal store. Unit tests pass fakes; `target_override` pins the address of a port probe."""

    engine: ContainerEngine | None = None
    container_id: str = ""
    ports: Mapping[str, PortBinding] = field(default_factory=dict)
    network: str | None = None
    store: SignalStore | None = None
    transport: httpx.BaseTransport | None = None
    target_override: Target | None = None

    def container_engine(self) -> ContainerEngine:
        """The engine the container runs on (PnrError if this context has none)."""
        if self.engine is None:
            raise PnrError("this probe asks the container engine, and its context has none")
        return self.engine

    def target(self, check: PortCheck) -> Target:
        if self.target_override is not None:
            return self.target_override
        key = check.port_key or ""
        binding = self.ports.get(key)
        if check.target == "network":
            port = binding.container_port if binding else int(key.split("/")[0])
            ip = self.container_engine().container_ip(self.container_id, self.network)
            if not ip:
                raise PnrError(f"container {self.container_id[:12]} has no address on network {self.network}")
            return Target(ip, port)
        if binding is None:
            raise PnrError(f"port_key {key!r} is not a published port of the container")
        return Target(self.container_engine().probe_host(binding.host_ip), binding.host_port)


class ContainerProbe(Probe):
    """A kind that asks the engine about its chunk's container (exec, log, docker); `check` is its config."""

    def __init__(
        self, engine: ContainerEngine, container_id: str, check: CheckBase | None = None, **timing: Unpack[Timing]
    ) -> None:
        super().__init__(**timing)
        self.engine = engine
        self.container_id = container_id
        self.check = check

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> Probe:
        return cls(ctx.container_engine(), ctx.container_id, check, **timing_of(check))
