"""The Docker engines of a domain: `engines: {NAME: {host, tls, address}}`; a chunk names one with `engine`.

A chunk without `engine` runs on the environment's engine (DOCKER_HOST, else the local socket), called
`default` in messages, `pnr status` and `${chunk:...}` resolution.
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


EngineUrl = Annotated[str, AfterValidator(_check_engine_url)]
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

    host: EngineUrl = Field(description="unix:///path/docker.sock, tcp://HOST:PORT or ssh://USER@HOST")
    tls: EngineTls | None = Field(default=None, description="TLS for a tcp:// host")
    address: Address | None = Field(
        default=None,
        description="where this engine's published ports are reached from here (probes, ${chunk:NAME.host}); "
        "default: the host of a tcp/ssh URL, 127.0.0.1 for a unix socket. Ports written without an address "
        "are published on it when it is an IP address",
    )

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> EngineSpec:
        if self.tls is not None and not self.host.startswith("tcp://"):
            raise ValueError(f"tls is for tcp:// engines; {self.host!r} is not one")
        return self

    def reach_address(self) -> str:
        """Where the engine's published ports are dialled from this machine."""
        if self.address:
            return self.address
        if self.host.startswith("unix://"):
            return DEFAULT_HOST_IP
        return urlparse(self.host).hostname or DEFAULT_HOST_IP

    def port_ip(self) -> str:
        """The host address a port written without one is published on: the engine's address when it is an
        IP address (so it is reachable where pnr dials it), else 127.0.0.1."""
        address = self.reach_address()
        return address if is_ip(address) else DEFAULT_HOST_IP
