"""docker-py below the `Engine`: clients built for an endpoint, docker-py and requests errors as pnr's
(`docker_errors`), a followed log as lines, and what an inspect record says about a container's health."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Protocol, TypedDict

import docker
import docker.errors
import docker.tls
import requests.exceptions

from pnr.engines.resolve import Endpoint, TlsFiles, resolve_endpoint, unreachable_hint
from pnr.exceptions import EngineError, EngineUnreachable, NameInUse
from pnr.model import DEFAULT_ENGINE


class Reached(Protocol):
    """What an error message names of the engine a call went to."""

    @property
    def name(self) -> str: ...

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def host(self) -> str: ...


class DockerClient(Protocol):
    """What pnr uses of a `docker.DockerClient` (docker-py has no type hints): the low-level API for every call,
    the image collection for builds, and the ping."""

    api: docker.APIClient
    images: docker.models.images.ImageCollection

    def ping(self) -> bool: ...


class LogSource(Protocol):
    """docker-py's followed log (`APIClient.logs(stream=True)`): chunks of output until it ends or is closed."""

    def __iter__(self) -> Iterator[bytes | str]: ...

    def close(self) -> None: ...


# What pnr reads of a container's inspect record (docker's API, keys as the engine writes them)
class HealthLogEntry(TypedDict, total=False):
    ExitCode: int
    Output: str


class HealthState(TypedDict, total=False):
    Status: str
    Log: list[HealthLogEntry] | None


class StateRecord(TypedDict, total=False):
    Status: str
    Running: bool
    ExitCode: int
    StartedAt: str
    Health: HealthState | None


class HealthcheckConfig(TypedDict, total=False):
    Test: list[str] | None
    StartPeriod: int
    Interval: int
    Timeout: int


class ConfigRecord(TypedDict, total=False):
    Labels: dict[str, str] | None
    StopTimeout: int
    Healthcheck: HealthcheckConfig | None


class ContainerInfo(TypedDict, total=False):
    """`APIClient.inspect_container`, the keys pnr reads."""

    Id: str
    Name: str
    State: StateRecord | None
    Config: ConfigRecord | None


# Seconds docker-py waits for the engine's answer to one call: docker-py's own default. A busy engine may take
# over ten seconds to start a container (40 at once on a loaded 2-core machine did); an engine that accepts
# connections but never answers is found by the pings (`EngineSet.unreachable`, PING_TIMEOUT), which end a run
# within seconds without waiting for threads blocked in calls.
CALL_TIMEOUT = 60.0
SLOW_CALL_TIMEOUT = 60.0


HEALTH_NEVER_RUN = "never-run"  # Engine.health: the engine has had ample time for checks and ran none
_NS = 1e-9


def _checks_missed(info: ContainerInfo, now: float) -> float | None:
    """Seconds since a running container started, when that is well past the time its first HEALTHCHECK was due
    (start period + two intervals + the timeout + 10 s); else None."""
    state: StateRecord = info.get("State") or {}
    match = re.match(
        r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?\d*(Z|[+-]\d\d:\d\d)$", state.get("StartedAt") or ""
    )
    if not state.get("Running") or not match:
        return None
    started = datetime.fromisoformat(match[1] + (match[2] or "") + match[3].replace("Z", "+00:00")).timestamp()
    check = _healthcheck(info)
    due = (check.get("StartPeriod") or 0) * _NS + 2 * (check.get("Interval") or 30e9) * _NS
    due += (check.get("Timeout") or 30e9) * _NS + 10
    return now - started if now - started > due else None


def stop_timeout(seconds: float | None) -> int | None:
    """The engine keeps whole seconds; round up so a grace period is never shortened."""
    return None if seconds is None else int(-(-seconds // 1))


@contextlib.contextmanager
def docker_errors(action: str, engine: Reached | None = None) -> Iterator[None]:
    """Translate docker-py / requests errors into EngineError with what pnr was doing (EngineUnreachable,
    naming the engine, when it does not answer)."""
    try:
        yield
    except EngineError:
        raise
    except docker.errors.APIError as exc:
        explanation = exc.explanation or str(exc)
        if isinstance(explanation, bytes):
            explanation = explanation.decode(errors="replace")
        raise EngineError(f"{action}: {explanation}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError) as exc:
        if engine is not None and engine.name != DEFAULT_ENGINE:
            fix = f"engines.{engine.name}.context" if engine.endpoint.context else f"engines.{engine.name}.host"
            raise EngineUnreachable(
                f"{action}: cannot reach the Docker engine {engine.name!r} ({engine.host}; is dockerd running "
                f"there? start it, or fix {fix}): {_unreachable_reason(exc)}",
                engine.name,
            ) from None
        endpoint = engine.endpoint if engine is not None else resolve_endpoint()
        raise EngineUnreachable(
            f"{action}: cannot reach the Docker engine {endpoint.host} (from {endpoint.source}): "
            f"{_unreachable_reason(exc)}\n  {unreachable_hint(endpoint)}",
            DEFAULT_ENGINE,
        ) from None


@contextlib.contextmanager
def name_in_use(name: str) -> Iterator[None]:
    """docker's 409 on create ("Conflict. The container name ... is already in use") as NameInUse."""
    try:
        yield
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise NameInUse(f"a container named {name} exists already: {exc.explanation}") from None
        raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _unreachable_reason(exc: BaseException) -> str:
    """The socket error under requests' wrapping ("[Errno 111] Connection refused"), else the first line."""
    found = re.search(r"\[Errno -?\d+\] [^\"')(]+", str(exc))
    return found.group(0).strip() if found else _short(exc)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _has_paramiko() -> bool:
    """docker-py speaks ssh:// through paramiko if installed, else through the `ssh` command."""
    import importlib.util

    return importlib.util.find_spec("paramiko") is not None


def _tls_config(tls: TlsFiles) -> docker.tls.TLSConfig:
    """docker-py's TLS settings from an endpoint's files."""
    cert = (tls.cert, tls.key) if tls.cert and tls.key else None
    try:
        return docker.tls.TLSConfig(client_cert=cert, ca_cert=tls.ca, verify=tls.verify)
    except docker.errors.TLSParameterError as exc:
        raise EngineError(f"TLS towards the Docker engine: {exc}") from None


def docker_client(
    endpoint: Endpoint, *, timeout: float = CALL_TIMEOUT, tls: docker.tls.TLSConfig | None = None
) -> DockerClient:
    """A docker-py client for `endpoint`, built explicitly (base URL, TLS, timeout): whatever the docker-py
    version, it talks to that endpoint and no other. `tls` (a docker.tls.TLSConfig) overrides the endpoint's."""
    client: DockerClient
    if endpoint.host.startswith("ssh://"):
        client = docker.DockerClient(base_url=endpoint.host, timeout=timeout, use_ssh_client=not _has_paramiko())
        return client
    if tls is None and endpoint.tls is not None:
        tls = _tls_config(endpoint.tls)
    client = docker.DockerClient(base_url=endpoint.host, timeout=timeout, tls=tls or False)
    return client


class LogStream:
    """The followed log of one container as whole lines (str, without the newline); `close()` ends it from
    another thread. Ends quietly when the container stops or the connection drops."""

    def __init__(self, stream: LogSource) -> None:
        self._stream = stream
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        pending = b""
        try:
            for chunk in self._stream:
                pending += chunk if isinstance(chunk, bytes) else str(chunk).encode()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace").removesuffix("\r")
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError, ValueError):
            pass  # closed, or the engine went away mid-stream: what was read is all there is
        if pending and not self._closed:
            yield pending.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):  # already closed, or the connection is gone
            self._stream.close()


def _healthcheck(info: ContainerInfo) -> HealthcheckConfig:
    config: ConfigRecord = info.get("Config") or {}
    return config.get("Healthcheck") or {}


def health_of(info: ContainerInfo, now: float) -> tuple[str | None, str]:
    """A container's HEALTHCHECK status from its inspect record (starting | healthy | unhealthy; None: the image
    has none; HEALTH_NEVER_RUN: the engine runs no checks) and the last check's exit code and output."""
    state: StateRecord = info.get("State") or {}
    health = state.get("Health")
    test = _healthcheck(info).get("Test") or []
    log = (health.get("Log") or []) if health else []
    if test and test[0] != "NONE" and not log:
        silent = _checks_missed(info, now)
        if silent is not None:
            return HEALTH_NEVER_RUN, (
                f"the engine has run no HEALTHCHECK in the {silent:.0f}s since the container started (Podman "
                "runs them with systemd timers, so a Podman without systemd runs none): use an exec probe "
                "with the HEALTHCHECK's command instead"
            )
    if not health:
        return ("starting" if test and test[0] != "NONE" else None), ""
    last = ""
    if log:
        entry = log[-1]
        last = f"exit {entry.get('ExitCode')}: {str(entry.get('Output') or '').strip()}"
    return str(health.get("Status") or "starting"), last
