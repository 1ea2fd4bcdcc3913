"""The Docker engines of a domain: `engines: {NAME: {host | context, tls, address}}`; a chunk names one with
`engine`.

A chunk without `engine` runs on the environment's engine (found as the docker CLI finds it: DOCKER_HOST, the
current context, the usual sockets), called `default` in messages, `pnr status` and `${chunk:...}` resolution.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AfterValidator, Field, model_validator

from pnr.model.container import DEFAULT_HOST_IP
from pnr.model.fields import Model

DEFAULT_ENGINE = "default"  # the environment's engine; reserved as a key of `engines`

_CONTEXT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # the docker CLI's rule for context names
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$")


def _check_engine_url(value: str) -> str:
    parsed = urlparse(value)
    scheme = parsed.scheme
    if scheme == "unix":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ValueError(f"host {value!r}: a unix socket is written unix:///absolute/path/docker.sock")
        return value
    if scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path not in ("", "/") or parsed.username:
            raise ValueError(f"host {value!r}: a tcp engine is written tcp://HOST:PORT (e.g. tcp://10.0.0.5:2376)")
        return value
    if scheme == "ssh":
        if not parsed.hostname or parsed.path not in ("", "/"):
            raise ValueError(f"host {value!r}: an ssh engine is written ssh://USER@HOST[:PORT]")
        return value
    raise ValueError(
        f"host {value!r} must start with unix://, tcp:// or ssh:// (e.g. tcp://10.0.0.5:2376, "
        "unix:///run/docker.sock, ssh://deploy@build-box)"
    )


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value.strip("[]")
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(value):
        raise ValueError(f"address {value!r} must be a host name or an IP address (no scheme, no port)")
    return value


def _check_context(value: str) -> str:
    if not _CONTEXT_RE.match(value):
        raise ValueError(
            f"context {value!r} is not a docker context name (letters, digits, '.', '_', '-'; see `docker context ls`)"
        )
    return value


EngineUrl = Annotated[str, AfterValidator(_check_engine_url)]
ContextName = Annotated[str, AfterValidator(_check_context)]
Address = Annotated[str, AfterValidator(_check_address)]


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class EngineTls(Model):
    """TLS towards a tcp engine; file paths are relative to the config file."""

    ca: str | None = Field(default=None, description="CA certificate (PEM) that signed the engine's certificate")
    cert: str | None = Field(default=None, description="client certificate (PEM); give key too")
    key: str | None = Field(default=None, description="client key (PEM); give cert too")
    verify: bool = Field(default=True, description="verify the engine's certificate (against ca, else system CAs)")

    @model_validator(mode="after")
    def _cert_and_key(self) -> EngineTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both 'cert' and 'key' (a client certificate and its key), or neither")
        return self

    def files(self) -> dict[str, str]:
        """The file fields that are set: name -> path as written."""
        return {k: v for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key)) if v is not None}


class EngineSpec(Model):
    """One Docker engine a domain uses."""

    host: EngineUrl | None = Field(
        default=None, description="unix:///path/docker.sock, tcp://HOST:PORT or ssh://USER@HOST (or give context)"
    )
    context: ContextName | None = Field(
        default=None,
        description="a docker CLI context (`docker context ls`) whose engine this is, instead of host: its "
        "endpoint and TLS come from the docker CLI's context store when a command runs",
    )
    tls: EngineTls | None = Field(default=None, description="TLS for a tcp:// host")
    address: Address | None = Field(
        default=None,
        description="where this engine's published ports are reached from here (probes, ${chunk:NAME.host}); "
        "default: the host of a tcp/ssh URL, 127.0.0.1 for a unix socket or a context. Ports written without an "
        "address are published on it when it is an IP address",
    )

    @model_validator(mode="after")
    def _host_or_context(self) -> EngineSpec:
        if (self.host is None) == (self.context is None):
            raise ValueError(
                "give exactly one of 'host' (e.g. tcp://10.0.0.5:2376) and 'context' (a `docker context ls` name)"
            )
        if self.tls is not None and not (self.host or "").startswith("tcp://"):
            what = f"{self.host!r} is not one" if self.host else "a context brings its own TLS material"
            raise ValueError(f"tls is for tcp:// engines; {what}")
        return self

    def reach_address(self) -> str:
        """Where the engine's published ports are dialled from this machine."""
        if self.address:
            return self.address
        if self.host is None or self.host.startswith("unix://"):
            return DEFAULT_HOST_IP  # a context: Docker Desktop, Colima, OrbStack... forward ports to localhost
        return urlparse(self.host).hostname or DEFAULT_HOST_IP

    def port_ip(self) -> str:
        """The host address a port written without one is published on: the engine's address when it is an
        IP address (so it is reachable where pnr dials it), else 127.0.0.1."""
        address = self.reach_address()
        return address if is_ip(address) else DEFAULT_HOST_IP
