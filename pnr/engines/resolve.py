"""Which Docker engine the environment names, found the way the `docker` CLI finds it:

1. `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` for TLS);
2. `DOCKER_CONTEXT`, else the `currentContext` of `$DOCKER_CONFIG/config.json` (default `~/.docker`): the
   context's endpoint and TLS material, read from the context store (`contexts/meta/<sha256(name)>/meta.json`,
   `contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem`). The context `default` means no context;
3. the platform's usual sockets, in order: the first that exists (else the first of them).

The result says where the endpoint came from and every place looked at, for `pnr doctor` and for the message
when no engine answers. Standard library only: the thin `pnr up` client compares endpoints without importing
docker-py. `Engine` builds its docker-py client from an `Endpoint` explicitly, so no docker-py version's own
lookup (7.2 added a context fallback, 7.0 and 7.1 have none) decides which engine pnr uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pnr.exceptions import EngineError

DEFAULT_CONTEXT = "default"  # the docker CLI's name for "no context": DOCKER_HOST, else the usual socket


class UnknownContext(EngineError):
    """A context name that the context store does not hold."""

    def __init__(self, name: str, store: Path, named_by: str) -> None:
        super().__init__(
            f"{named_by}: no Docker context named {name!r} in the context store {store} "
            "(`docker context ls` lists them; `docker context create` makes one; DOCKER_CONFIG chooses the store)"
        )
        self.name = name
        self.store = store


@dataclass(frozen=True)
class TlsFiles:
    """TLS towards an engine: PEM files (absent ones are None) and whether the engine's certificate is verified."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class Endpoint:
    """One engine endpoint: its URL (`unix:///…`, `tcp://…`, `ssh://…`, `npipe:////./pipe/…`), its TLS,
    where it came from (`source`), the context it belongs to (if any) and every place looked at, in order."""

    host: str
    source: str
    tls: TlsFiles | None = None
    context: str | None = None
    tried: tuple[str, ...] = field(default=(), compare=False)

    def identity(self) -> dict[str, object]:
        """What makes two endpoints the same engine (compared across processes, so plain JSON values)."""
        tls = None if self.tls is None else [self.tls.ca, self.tls.cert, self.tls.key, self.tls.verify]
        return {"host": self.host, "tls": tls}


# -- the platforms' usual sockets (one list per platform, chosen once) ------------------------------------
def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) if home else Path.home()


def _linux_sockets(env: Mapping[str, str]) -> list[str]:
    """The system socket, rootless Docker's, Podman's rootful and rootless ones."""
    found = ["unix:///var/run/docker.sock"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(f"unix://{runtime}/docker.sock")
    found.append("unix:///run/podman/podman.sock")
    if runtime:
        found.append(f"unix://{runtime}/podman/podman.sock")
    return found


def _macos_sockets(env: Mapping[str, str]) -> list[str]:
    """Docker Desktop's per-user socket, the system one, Colima, OrbStack, Rancher Desktop, Podman machine."""
    home = _home(env)
    podman = home / ".local/share/containers/podman/machine"
    paths = [
        home / ".docker/run/docker.sock",
        Path("/var/run/docker.sock"),
        home / ".colima/default/docker.sock",
        home / ".colima/docker.sock",
        home / ".orbstack/run/docker.sock",
        home / ".rd/docker.sock",
        podman / "podman.sock",
        podman / "podman-machine-default/podman.sock",
        podman / "qemu/podman.sock",
    ]
    if env.get("TMPDIR"):  # Podman 5's machine API socket
        paths.append(Path(env["TMPDIR"]) / "podman/podman-machine-default-api.sock")
    return [f"unix://{p}" for p in paths]


def _windows_sockets(env: Mapping[str, str]) -> list[str]:
    """Docker Desktop's engine pipe and its Linux-engine pipe."""
    return ["npipe:////./pipe/docker_engine", "npipe:////./pipe/dockerDesktopLinuxEngine"]


PLATFORM_SOCKETS: dict[str, Callable[[Mapping[str, str]], list[str]]] = {
    "linux": _linux_sockets,
    "darwin": _macos_sockets,
    "win32": _windows_sockets,
}
START_HINTS = {
    "linux": "start the engine (`systemctl start docker`, `dockerd`, or `systemctl --user start podman.socket`)",
    "darwin": "start Docker Desktop (or `colima start`, OrbStack, Rancher Desktop, `podman machine start`)",
    "win32": "start Docker Desktop",
}


def platform_key(platform: str = sys.platform) -> str:
    """`linux`, `darwin` or `win32` for a `sys.platform` value (other Unixes use Linux's list)."""
    if platform.startswith("win") or platform == "cygwin":
        return "win32"
    return "darwin" if platform == "darwin" else "linux"


PLATFORM = platform_key()


def usual_sockets(env: Mapping[str, str] | None = None, platform: str = PLATFORM) -> list[str]:
    """The platform's usual engine sockets, in the order they are tried."""
    return PLATFORM_SOCKETS[platform](os.environ if env is None else env)


def start_hint(platform: str = PLATFORM) -> str:
    """What to do when no engine answers."""
    return f"{START_HINTS[platform]}; or `docker context use NAME`; or set DOCKER_HOST"


def _socket_exists(url: str) -> bool:
    if url.startswith("npipe://"):
        return os.path.exists("\\\\.\\pipe\\" + url.rsplit("/", 1)[-1])
    return os.path.exists(url.removeprefix("unix://"))


# -- the docker CLI's config and context store -----------------------------------------------------------
def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$DOCKER_CONFIG`, else `~/.docker`."""
    env = os.environ if env is None else env
    configured = env.get("DOCKER_CONFIG")
    return Path(configured).expanduser() if configured else _home(env) / ".docker"


def context_store(env: Mapping[str, str] | None = None) -> Path:
    """Where the docker CLI keeps contexts (their metadata under meta/, TLS material under tls/)."""
    return config_dir(env) / "contexts"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def current_context(env: Mapping[str, str] | None = None) -> str | None:
    """`currentContext` of the docker CLI's config.json, None if unset or there is no config.json."""
    path = config_dir(env) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EngineError(f"{path}: not a readable docker CLI config ({exc}); fix or remove it") from None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return str(name) if name else None


def read_context(name: str, env: Mapping[str, str] | None = None, *, named_by: str = "context") -> Endpoint:
    """The docker endpoint of context `name` from the context store; UnknownContext if it has none."""
    store = context_store(env)
    meta = store / "meta" / _digest(name) / "meta.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UnknownContext(name, store, named_by) from None
    except (OSError, ValueError) as exc:
        raise EngineError(f"{named_by}: context {name!r}: {meta} is not readable ({exc})") from None
    docker_ep = ((data.get("Endpoints") or {}).get("docker") or {}) if isinstance(data, dict) else {}
    host = docker_ep.get("Host") if isinstance(docker_ep, dict) else None
    if not host:
        raise EngineError(
            f"{named_by}: context {name!r} has no docker endpoint ({meta}); fix it with "
            "`docker context update NAME --docker host=…`"
        )
    tls_dir = store / "tls" / _digest(name) / "docker"
    files = {part: tls_dir / f"{part}.pem" for part in ("ca", "cert", "key")}
    present = {part: str(path) for part, path in files.items() if path.is_file()}
    skip_verify = bool(docker_ep.get("SkipTLSVerify"))
    tls = None
    if present or skip_verify:  # as the docker CLI: TLS when there is material or verification is skipped
        tls = TlsFiles(present.get("ca"), present.get("cert"), present.get("key"), verify=not skip_verify)
    return Endpoint(str(host), f"{named_by} ({meta})", tls, context=name)


# -- the order -------------------------------------------------------------------------------------------
def _docker_host_tls(env: Mapping[str, str]) -> TlsFiles | None:
    """DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as the docker CLI and docker-py read them."""
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    cert_path = env.get("DOCKER_CERT_PATH")
    if not verify and not cert_path:
        return None
    folder = Path(cert_path).expanduser() if cert_path else config_dir(env)
    present = {
        part: str(folder / f"{part}.pem") for part in ("ca", "cert", "key") if (folder / f"{part}.pem").is_file()
    }
    return TlsFiles(present.get("ca"), present.get("cert"), present.get("key"), verify=verify)


def resolve_endpoint(
    env: Mapping[str, str] | None = None,
    *,
    platform: str = PLATFORM,
    exists: Callable[[str], bool] = _socket_exists,
) -> Endpoint:
    """The environment's engine endpoint (see the module docstring). EngineError (UnknownContext) when a context
    is named that the store does not hold, or the docker CLI's config is unreadable."""
    env = os.environ if env is None else env
    tried: list[str] = []
    host = env.get("DOCKER_HOST")
    if host:
        return Endpoint(host, "DOCKER_HOST", _docker_host_tls(env), tried=(f"DOCKER_HOST={host}",))
    tried.append("DOCKER_HOST: not set")
    name = env.get("DOCKER_CONTEXT")
    if name:
        named_by = f"DOCKER_CONTEXT={name}"
    else:
        tried.append("DOCKER_CONTEXT: not set")
        name = current_context(env)
        config = config_dir(env) / "config.json"
        named_by = f"current context {name} ({config})"
        if not name:
            tried.append(f"{config}: no current context")
    if name and name != DEFAULT_CONTEXT:
        found = read_context(name, env, named_by=named_by)
        tried.append(f"{named_by}: {found.host}")
        return Endpoint(found.host, found.source, found.tls, name, tuple(tried))
    if name:
        tried.append(f"{named_by}: the default context (the usual sockets)")
    candidates = usual_sockets(env, platform)
    for url in candidates:
        present = exists(url)
        tried.append(f"{url}: {'found' if present else 'absent'}")
        if present:
            return Endpoint(url, f"the usual socket {url}", tried=tuple(tried))
    return Endpoint(candidates[0], "the usual sockets (none found)", tried=tuple(tried))


def resolve_context(name: str, env: Mapping[str, str] | None = None, *, named_by: str = "context") -> Endpoint:
    """A context named in a config (`engines.NAME.context`); `default` is the environment's usual socket."""
    env = os.environ if env is None else env
    if name == DEFAULT_CONTEXT:
        return resolve_endpoint(
            {k: v for k, v in env.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
            | {"DOCKER_CONTEXT": DEFAULT_CONTEXT}
        )
    found = read_context(name, env, named_by=named_by)
    return Endpoint(found.host, found.source, found.tls, name, (f"{named_by}: {found.host}",))


def unreachable_hint(endpoint: Endpoint, platform: str = PLATFORM) -> str:
    """Every place looked at, in order, and what to do: for the message when the engine does not answer."""
    places = "\n".join(f"    {place}" for place in endpoint.tried) or f"    {endpoint.source}: {endpoint.host}"
    return f"looked for the engine, in order:\n{places}\n  to fix: {start_hint(platform)}"
