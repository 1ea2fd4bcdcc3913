"""Readiness probes: one small class per kind behind a base that owns timing.

    Probe.run()  first attempt at once, then one every `interval`; ready after `success_threshold`
                 successes in a row; gives up after `failure_threshold` counted failures in a row
                 (failures inside `start_period` do not count) or at `deadline`.
    ├── TcpProbe       a connection is accepted and kept open
    ├── HttpProbe      status / body / JSON field over http or https
    ├── ExecProbe      a command inside the container exits 0
    ├── LogProbe       a regex seen N times in the container's logs
    ├── DockerProbe    the image's HEALTHCHECK says healthy
    ├── SignalProbe    a signal in the runtime state has the wanted tv
    ├── AllProbe / AnyProbe   composites
    └── third-party kinds: entry point group `pnr.probes` (see `load_plugins`)

"Not ready yet" (connection refused, wrong status, unhealthy) is retried until the deadline; "will never be
ready" fails at once: the `alive` callback raises ContainerGone (the container exited), or an attempt raises
NeverReady (e.g. the image has no HEALTHCHECK). The result carries the last observation for the message.
HTTP, socket and engine errors are turned into observations here, never raised out of an attempt.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_args

import httpx

from pnr import config as _config
from pnr.config import (
    AllCheck,
    AnyCheck,
    DockerCheck,
    ExecCheck,
    HttpCheck,
    LogCheck,
    PluginCheck,
    PortBinding,
    SignalCheck,
    TcpCheck,
    parse_json_path,
)
from pnr.exceptions import PnrError

ENTRY_POINT_GROUP = "pnr.probes"


class ContainerGone(Exception):
    """Raised by an `alive` callback when the container has exited: stop probing now."""


class Aborted(Exception):
    """Raised by an `alive` callback when the run was aborted."""


class NeverReady(Exception):
    """Raised by `attempt()` when waiting cannot help (e.g. no HEALTHCHECK in the image): fail at once."""


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


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Probe:
    """Base: owns the timing; a subclass implements one `attempt()` -> (ok, observation).

    Third-party kinds subclass it, set `check_model` (a `PluginCheck` subclass with `type: Literal[kind]`)
    and implement `from_check`."""

    check_model: ClassVar[type[PluginCheck] | None] = None

    def __init__(
        self, *, interval: float, timeout: float, deadline: float, start_period: float = 0.0,
        success_threshold: int = 1, failure_threshold: int | None = None,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.deadline = deadline
        self.start_period = start_period
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold

    @classmethod
    def from_check(cls, check: Any, ctx: ProbeContext) -> Probe:
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
        count = successes = failures = 0
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
                if ok:
                    successes, failures = successes + 1, 0
                    if successes >= self.success_threshold:
                        suffix = f" ({successes} successes in a row)" if self.success_threshold > 1 else ""
                        return ProbeResult(True, count, elapsed, observation + suffix, history)
                else:
                    successes = 0
                    if elapsed >= self.start_period:
                        failures += 1
                    if self.failure_threshold is not None and failures >= self.failure_threshold:
                        return ProbeResult(False, count, elapsed, f"{observation} (failed {failures} times in a row, failure_threshold {self.failure_threshold})", history)
                if elapsed + self.interval > self.deadline:
                    return ProbeResult(False, count, elapsed, f"{observation} (gave up after {elapsed:.1f}s, deadline {self.deadline:g}s)", history)
                sleep(self.interval)
        finally:
            self.close()


@dataclass
class ProbeContext:
    """What a probe may need from its run: the engine, the container, its ports, the domain network and the
    signal store. Unit tests pass fakes; `target_override` pins the address of a port probe."""

    engine: Any = None
    container_id: str = ""
    ports: Mapping[str, PortBinding] = field(default_factory=dict)
    network: str | None = None
    store: Any = None
    transport: httpx.BaseTransport | None = None
    target_override: Target | None = None

    def target(self, check: TcpCheck | HttpCheck) -> Target:
        if self.target_override is not None:
            return self.target_override
        key = check.port_key or ""
        binding = self.ports.get(key)
        if check.target == "network":
            port = binding.container_port if binding else int(key.split("/")[0])
            ip = self.engine.container_ip(self.container_id, self.network)
            if not ip:
                raise PnrError(f"container {self.container_id[:12]} has no address on network {self.network}")
            return Target(ip, port)
        if binding is None:
            raise PnrError(f"port_key {key!r} is not a published port of the container")
        return Target(self.engine.probe_host(binding.host_ip), binding.host_port)


class TcpProbe(Probe):
    """Ready when a connection is accepted and not closed at once by the peer.

    Docker's userland proxy accepts a connection on a published port even while nothing listens in the
    container, then closes it; a short read tells that apart from a real server, which keeps it open.
    """

    EOF_WINDOW = 0.05

    def __init__(self, target: Target, **timing: Any) -> None:
        super().__init__(**timing)
        self.target = target

    def describe(self) -> str:
        return f"tcp {self.target.host}:{self.target.port}"

    def attempt(self) -> tuple[bool, str]:
        where = f"{self.target.host}:{self.target.port}"
        try:
            with socket.create_connection((self.target.host, self.target.port), timeout=self.timeout) as sock:
                sock.settimeout(self.EOF_WINDOW)
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    return True, f"connected to {where}"
                except OSError as exc:
                    return False, f"connection reset by {where} ({exc.strerror or exc})"
                if data:
                    return True, f"connected to {where} (server spoke first)"
                return False, "connection accepted and closed at once (nothing listens behind the published port yet)"
        except TimeoutError:
            return False, f"no answer from {where} within {self.timeout:g}s"
        except OSError as exc:
            return False, f"cannot connect to {where}: {exc.strerror or exc}"


_MISSING = object()


def json_lookup(data: Any, steps: list[str | int]) -> Any:
    """The value at `steps` in parsed JSON, or `_MISSING`."""
    for step in steps:
        if isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict) and step in data:
            data = data[step]
        else:
            return _MISSING
    return data


class HttpProbe(Probe):
    """Ready when the request answers an expected status and every body condition holds."""

    def __init__(self, target: Target, check: HttpCheck, transport: httpx.BaseTransport | None = None, **timing: Any) -> None:
        super().__init__(**timing)
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.check = check
        self.url = f"{check.scheme}://{host}:{target.port}{check.path}"
        self._regex = re.compile(check.body_regex) if check.body_regex is not None else None
        self._json_steps = parse_json_path(check.json_path) if check.json_path is not None else None
        self._client = httpx.Client(
            timeout=self.timeout, transport=transport, follow_redirects=check.follow_redirects, trust_env=False,
            verify=check.tls_verify,
        )

    def describe(self) -> str:
        return f"http {self.check.method} {self.url} expecting {self.check.expected_code}"

    def attempt(self) -> tuple[bool, str]:
        check = self.check
        what = f"{check.method} {self.url}"
        try:
            response = self._client.request(check.method, self.url, headers=check.headers, content=check.body)
        except httpx.TimeoutException:
            return False, f"{what}: no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            text = str(exc) or "connection failed"
            hint = "; for a self-signed certificate set tls_verify: false" if "CERTIFICATE_VERIFY_FAILED" in text else ""
            return False, f"{what}: {type(exc).__name__}: {_snippet(text)}{hint}"
        body = response.text
        seen = f"{what} -> {response.status_code}"
        if not check.code_ok(response.status_code):
            return False, f"{seen} (expected {check.expected_code}); body: {_snippet(body)!r}"
        if check.body_contains is not None and check.body_contains not in body:
            return False, f"{seen} but body lacks {check.body_contains!r}; body: {_snippet(body)!r}"
        if self._regex is not None and not self._regex.search(body):
            return False, f"{seen} but body does not match /{check.body_regex}/; body: {_snippet(body)!r}"
        if self._json_steps is not None:
            try:
                data = json.loads(body)
            except ValueError:
                return False, f"{seen} but the body is not JSON; body: {_snippet(body)!r}"
            value = json_lookup(data, self._json_steps)
            if value is _MISSING:
                return False, f"{seen} but the body has no {check.json_path}; body: {_snippet(body)!r}"
            if check.compares_json_value and value != check.json_value:
                return False, f"{seen} but {check.json_path} is {json.dumps(value)} (expected {json.dumps(check.json_value)})"
            return True, f"{seen}, {check.json_path} = {_snippet(json.dumps(value), 80)}"
        return True, seen

    def close(self) -> None:
        self._client.close()


def _call_with_timeout(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
    """(finished, result-or-exception). An engine call that hangs is left behind in a daemon thread."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to the caller as an observation
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True, name="pnr-probe-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, None
    return True, box.get("error", box.get("value"))


class ExecProbe(Probe):
    """Ready when a command run inside the container exits 0 (and its output matches, if asked)."""

    def __init__(self, engine: Any, container_id: str, check: ExecCheck, **timing: Any) -> None:
        super().__init__(**timing)
        self.engine = engine
        self.container_id = container_id
        self.check = check
        self.args = check.args()
        self._regex = re.compile(check.output_regex) if check.output_regex is not None else None

    def describe(self) -> str:
        return f"exec {' '.join(self.args)!r} in {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        cmd = " ".join(self.args)
        finished, result = _call_with_timeout(lambda: self.engine.exec_run(self.container_id, self.args), self.timeout)
        if not finished:
            return False, f"`{cmd}` did not exit within {self.timeout:g}s"
        if isinstance(result, Exception):
            return False, f"`{cmd}` could not run: {_snippet(str(result))}"
        code, output = result
        shown = _snippet(output)
        if code != 0:
            return False, f"`{cmd}` exited {code}; output: {shown!r}"
        if self.check.output_contains is not None and self.check.output_contains not in output:
            return False, f"`{cmd}` exited 0 but output lacks {self.check.output_contains!r}; output: {shown!r}"
        if self._regex is not None and not self._regex.search(output):
            return False, f"`{cmd}` exited 0 but output does not match /{self.check.output_regex}/; output: {shown!r}"
        return True, f"`{cmd}` exited 0"


class LogProbe(Probe):
    """Ready when a regex (per line) has matched `count` times in the container's logs since it started."""

    def __init__(self, engine: Any, container_id: str, check: LogCheck, **timing: Any) -> None:
        super().__init__(**timing)
        self.engine = engine
        self.container_id = container_id
        self.check = check
        self._regex = re.compile(check.pattern, re.MULTILINE)

    def describe(self) -> str:
        times = f" {self.check.count} times" if self.check.count > 1 else ""
        return f"log /{self.check.pattern}/{times} in {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        stream = self.check.stream
        finished, result = _call_with_timeout(
            lambda: self.engine.logs_text(self.container_id, stdout=stream != "stderr", stderr=stream != "stdout"),
            self.timeout,
        )
        if not finished:
            return False, f"reading logs took longer than {self.timeout:g}s"
        if isinstance(result, Exception):
            return False, f"cannot read logs: {_snippet(str(result))}"
        text: str = result
        seen = sum(1 for _ in self._regex.finditer(text))
        if seen >= self.check.count:
            return True, f"/{self.check.pattern}/ seen {seen} time(s)"
        lines = text.rstrip().splitlines()
        last = f"; last line: {_snippet(lines[-1], 120)!r}" if lines else "; no log output yet"
        return False, f"/{self.check.pattern}/ seen {seen} of {self.check.count} time(s){last}"


class DockerProbe(Probe):
    """Ready when the image's HEALTHCHECK reports healthy. `unhealthy` is an observation, not the end:
    services often report unhealthy while warming up, so only the deadline (or failure_threshold) ends it."""

    def __init__(self, engine: Any, container_id: str, **timing: Any) -> None:
        super().__init__(**timing)
        self.engine = engine
        self.container_id = container_id

    def describe(self) -> str:
        return f"docker HEALTHCHECK of {self.container_id[:12]}"

    def attempt(self) -> tuple[bool, str]:
        finished, result = _call_with_timeout(lambda: self.engine.health(self.container_id), self.timeout)
        if not finished:
            return False, f"the engine did not answer within {self.timeout:g}s"
        if isinstance(result, Exception):
            return False, f"cannot inspect the container: {_snippet(str(result))}"
        status, last = result
        if status is None:
            raise NeverReady("the image defines no HEALTHCHECK: add one to the image, or use another probe type")
        detail = f"; last check: {_snippet(last, 160)}" if last else ""
        if status == "healthy":
            return True, f"health is healthy{detail}"
        return False, f"health is {status}{detail}"


class SignalProbe(Probe):
    """Ready when the signal has the wanted truth value in the runtime state (files re-read each attempt)."""

    def __init__(self, store: Any, check: SignalCheck, **timing: Any) -> None:
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


class _CompositeProbe(Probe):
    def __init__(self, children: list[Probe], **timing: Any) -> None:
        super().__init__(**timing)
        self.children = children

    def close(self) -> None:
        for child in self.children:
            child.close()


class AllProbe(_CompositeProbe):
    """Ready when every child has passed once; a passed child is not attempted again."""

    def __init__(self, children: list[Probe], **timing: Any) -> None:
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

    def __init__(self, children: list[Probe], **timing: Any) -> None:
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


# -- building probes from checks -------------------------------------------------------------------
def timing_of(check: Any) -> dict[str, Any]:
    return {
        "interval": check.interval_seconds, "timeout": check.timeout_seconds, "deadline": check.deadline_seconds,
        "start_period": check.start_period_seconds, "success_threshold": check.success_threshold,
        "failure_threshold": check.failure_threshold,
    }


def make_probe(check: Any, ctx: ProbeContext | Target, transport: httpx.BaseTransport | None = None) -> Probe:
    """The probe for a validated check. `ctx` may be a bare Target for tcp/http (as in unit tests)."""
    if isinstance(ctx, Target):
        ctx = ProbeContext(target_override=ctx, transport=transport)
    elif transport is not None:
        ctx.transport = transport
    timing = timing_of(check)
    if isinstance(check, HttpCheck):
        return HttpProbe(ctx.target(check), check, transport=ctx.transport, **timing)
    if isinstance(check, TcpCheck):
        return TcpProbe(ctx.target(check), **timing)
    if isinstance(check, ExecCheck):
        return ExecProbe(ctx.engine, ctx.container_id, check, **timing)
    if isinstance(check, LogCheck):
        return LogProbe(ctx.engine, ctx.container_id, check, **timing)
    if isinstance(check, DockerCheck):
        return DockerProbe(ctx.engine, ctx.container_id, **timing)
    if isinstance(check, SignalCheck):
        return SignalProbe(ctx.store, check, **timing)
    if isinstance(check, (AllCheck, AnyCheck)):
        children = [make_probe(child, ctx) for child in check.checks]
        return (AllProbe if isinstance(check, AllCheck) else AnyProbe)(children, **timing)
    probe_cls = _PLUGIN_PROBES.get(getattr(check, "type", ""))
    if probe_cls is None:
        raise PnrError(f"no probe for health check type {getattr(check, 'type', check)!r}")
    return probe_cls.from_check(check, ctx)


# -- third-party kinds -----------------------------------------------------------------------------
_PLUGIN_PROBES: dict[str, type[Probe]] = {}
_plugins_loaded = False
_plugins_lock = threading.RLock()


def register_probe(probe_cls: type[Probe], kind: str | None = None) -> str:
    """Register a third-party probe kind: `probe_cls.check_model` validates its config like a built-in."""
    model = probe_cls.check_model
    if not (isinstance(model, type) and issubclass(model, PluginCheck)):
        raise TypeError(f"{probe_cls.__name__}.check_model must be a subclass of pnr.config.PluginCheck")
    literal = get_args(model.model_fields["type"].annotation)
    if len(literal) != 1 or not isinstance(literal[0], str):
        raise TypeError(f"{model.__name__}.type must be declared as Literal['<kind>']")
    name = kind or literal[0]
    if name != literal[0]:
        raise TypeError(f"entry point {name!r} registers {model.__name__}, whose type is {literal[0]!r}")
    if name in _config.BUILTIN_CHECKS:
        raise TypeError(f"probe type {name!r} is built in; a plugin cannot replace it")
    _PLUGIN_PROBES[name] = probe_cls
    _config._PLUGIN_CHECKS[name] = model
    return name


def load_plugins(reload: bool = False) -> dict[str, type[Probe]]:
    """Load third-party probe kinds from entry points `pnr.probes` (name = type, value = Probe subclass).
    Once per process; a broken plugin is skipped with a warning, never breaks built-in kinds."""
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded and not reload:
            return _PLUGIN_PROBES
        _plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                register_probe(ep.load(), ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break pnr
                warnings.warn(f"pnr probe plugin {ep.name!r} ({ep.value}) was not loaded: {exc}", stacklevel=2)
        return _PLUGIN_PROBES
