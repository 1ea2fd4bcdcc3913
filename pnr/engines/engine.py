"""The docker-py adapter `Engine` (with `pnr.engines.dockerapi`, the only code that talks to docker-py): one object
per Docker engine, the `ContainerEngine` surface. Docker errors become EngineError here.

Ownership: everything pnr creates carries `io.pnr.*` labels; pnr only ever stops or removes objects whose
labels name the domain it acts for. A name clash with an object pnr did not create is an error, never a removal.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import docker
import docker.errors
import docker.tls

from pnr.engines.dockerapi import (
    SLOW_CALL_TIMEOUT,
    ConfigRecord,
    ContainerInfo,
    DockerClient,
    LogStream,
    StateRecord,
    docker_client,
    docker_errors,
    health_of,
    is_loopback,
    name_in_use,
    stop_timeout,
)
from pnr.engines.engineset import EngineSet
from pnr.engines.protocol import ContainerState, NetworkInfo
from pnr.engines.resolve import Endpoint, resolve_context, resolve_endpoint
from pnr.exceptions import EngineError, EngineUnreachable, ImageError
from pnr.model import DEFAULT_ENGINE, DEFAULT_HOST_IP, DesignChunk
from pnr.model.container import host_path, is_host_path, split_volume

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pnr.model import EngineSpec, Plan

LABEL_MANAGED = "io.pnr.managed"
LABEL_DOMAIN = "io.pnr.domain"
LABEL_CPUX = "io.pnr.cpux"
LABEL_CHUNK = "io.pnr.chunk"
LABEL_HASH = "io.pnr.config-hash"
LABEL_RUN = "io.pnr.flow-run-id"
LABEL_CONFIG = "io.pnr.config"  # the absolute path of the config file that created it
LABEL_SPEC = "io.pnr.spec"  # the desired state it was made from (env values digested), for change reasons


def image_ref(domain: str, chunk: DesignChunk) -> str:
    """The image a chunk runs: its `image`, or the tag pnr gives an image built from `build_path`."""
    return chunk.container.image or f"pnr-{domain}-{chunk.name}:latest".lower()


def network_name(domain: str) -> str:
    return f"pnr_{domain}"


DEFAULT_STOP_SECONDS = 5


class Engine:
    """One Docker engine behind a small surface. `host` is how to reach it (a DOCKER_HOST-style URL), or
    `endpoint` (a resolved one, e.g. a context's); neither: the environment's, as the docker CLI finds it
    (`pnr.engines.resolve`). Pass `client` to inject a fake in unit tests.

    `name` is the engine's name in the config (`default`: the environment's), for messages. `address` is where
    its published ports are dialled (default: the host of a tcp/ssh URL, else 127.0.0.1); `port_ip` is the host
    address ports written without one are published on. `tls` is a docker.tls.TLSConfig for a tcp host."""

    def __init__(
        self,
        client: DockerClient | None = None,
        host: str | None = None,
        *,
        name: str = DEFAULT_ENGINE,
        address: str | None = None,
        port_ip: str = DEFAULT_HOST_IP,
        tls: docker.tls.TLSConfig | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self._client = client
        self._slow_client: DockerClient | None = None
        self._injected = client is not None
        if endpoint is None and host is not None:
            endpoint = Endpoint(host, f"engines.{name}.host", tried=(f"engines.{name}.host: {host}",))
        self._endpoint = endpoint  # None: resolved from the environment when first needed
        self.name = name
        self._address = address
        self.port_ip = port_ip
        self.tls = tls

    def engine_set(self, plan: Plan, cpuxs: Iterable[str] | None = None) -> EngineSet:
        """The engines the chunks of `plan` (of `cpuxs`, default all) run on (`EngineSource`): the environment's
        engine (name `default`) is their default and the config's `engines` join it; a named engine runs every
        chunk."""
        if self.name == DEFAULT_ENGINE:
            return EngineSet.for_plan(plan, cpuxs, default=self, factory=engine_from_spec)
        return EngineSet.single(self, plan)

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return docker_errors(action, self)

    @property
    def endpoint(self) -> Endpoint:
        """Where the engine is and where that came from (EngineError if the environment names no usable one)."""
        if self._endpoint is None:
            self._endpoint = resolve_endpoint()
        return self._endpoint

    @property
    def host(self) -> str:
        return self.endpoint.host

    def describe(self) -> str:
        """`engine two (tcp://127.0.0.2:2375)`, or the environment's engine."""
        try:
            host = self.host
        except EngineError:
            host = "not resolved"
        if self.name == DEFAULT_ENGINE:
            return f"the default engine ({host})"
        return f"engine {self.name} ({host})"

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            endpoint = self.endpoint
            with self._errors("connecting to the Docker engine"):
                self._client = docker_client(endpoint, tls=self.tls)
            if str(getattr(self._client.api, "base_url", "")).startswith("http+docker://localhost"):
                # a unix socket: no proxy or .netrc applies, yet requests looks both up in the environment on
                # every call (~3 % of the runner's CPU at 300 chunks)
                self._client.api.trust_env = False
        return self._client

    @property
    def slow_client(self) -> DockerClient:
        """A client with the longer timeout, for removals."""
        if self._slow_client is None:
            if self._injected:
                return self.client  # the caller's client (a fake in unit tests) serves every call
            with self._errors("connecting to the Docker engine"):
                self._slow_client = docker_client(self.endpoint, timeout=SLOW_CALL_TIMEOUT, tls=self.tls)
        return self._slow_client

    def ping(self) -> None:
        with self._errors("connecting to the Docker engine"):
            self.client.ping()

    def is_local(self) -> bool:
        """The engine runs on this machine (no host, a unix socket, or a loopback tcp address): its host ports
        are ours to test."""
        if not self.host or self.host.startswith(("unix://", "npipe://")):
            return True
        if self.host.startswith(("tcp://", "http://", "https://")):
            return is_loopback(urlparse(self.host).hostname or "")
        return False

    @property
    def address(self) -> str:
        """Where this engine's published ports are reached from here."""
        if self._address:
            return self._address
        if self.host.startswith(("tcp://", "ssh://", "http://", "https://")):
            parsed = urlparse(self.host)
            if parsed.hostname:
                return parsed.hostname
        return DEFAULT_HOST_IP

    def published_ports(self, name_or_id: str) -> set[tuple[int, str]]:
        """(host port, protocol) pairs a container publishes; empty if it does not exist."""
        with self._errors(f"inspecting container {name_or_id}"):
            try:
                info = self.client.api.inspect_container(name_or_id)
            except docker.errors.NotFound:
                return set()
        out: set[tuple[int, str]] = set()
        for key, binds in ((info.get("HostConfig") or {}).get("PortBindings") or {}).items():
            proto = key.partition("/")[2] or "tcp"
            for bind in binds or []:
                with contextlib.suppress(TypeError, ValueError):
                    out.add((int(bind.get("HostPort") or 0), proto))
        return out

    def probe_host(self, bind_ip: str) -> str:
        """Where a published port can be dialled from here: the engine's address for a remote engine or a
        port published on every interface; the bound address itself on a local engine."""
        if not self.is_local() or bind_ip in ("0.0.0.0", "::", ""):
            return self.address
        return bind_ip

    # -- networks --------------------------------------------------------------------------------
    def ensure_network(self, domain: str) -> str:
        name = network_name(domain)
        with self._errors(f"creating network {name}"):
            for net in self.client.api.networks(names=[name]):
                if net["Name"] != name:
                    continue
                if (net.get("Labels") or {}).get(LABEL_DOMAIN) != domain:
                    raise EngineError(f"network {name} exists but pnr did not create it; remove or rename it yourself")
                return name
            self.client.api.create_network(
                name, driver="bridge", labels={LABEL_MANAGED: "true", LABEL_DOMAIN: domain}, check_duplicate=True
            )
        return name

    def owned_networks(self, domain: str) -> list[NetworkInfo]:
        with self._errors("listing networks"):
            nets = self.client.api.networks(filters={"label": [f"{LABEL_DOMAIN}={domain}"]})
        return [
            NetworkInfo(Id=n["Id"], Name=n.get("Name", ""))
            for n in nets
            if (n.get("Labels") or {}).get(LABEL_DOMAIN) == domain
        ]

    def remove_network(self, net_id: str, settle_seconds: float = 15.0) -> None:
        """Remove a network. Right after its containers were removed the engine may still hold their endpoints
        (it releases them asynchronously, slowly under load: seen after removing 500 containers), so "has active
        endpoints" is retried for up to `settle_seconds`."""
        deadline = time.monotonic() + settle_seconds
        with self._errors(f"removing network {net_id[:12]}"), contextlib.suppress(docker.errors.NotFound):
            while True:
                try:
                    self.slow_client.api.remove_network(net_id)
                    return
                except docker.errors.APIError as exc:
                    if "active endpoints" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)

    # -- images ----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        with self._errors(f"inspecting image {ref}"):
            try:
                return str(self.client.api.inspect_image(ref)["Id"])
            except docker.errors.ImageNotFound:
                return None

    def ensure_image(self, domain: str, chunk: DesignChunk, base_dir: Path, build: bool = False) -> str:
        """Return the image id for a chunk: local if present, else built from build_path, else pulled."""
        spec = chunk.container
        ref = image_ref(domain, chunk)
        if spec.build_path:
            existing = None if build else self.image_id(ref)
            if existing:
                return existing
            context = Path(host_path(spec.build_path, base_dir))
            dockerfile = spec.dockerfile or "Dockerfile"
            if not (context / dockerfile).is_file():
                raise ImageError(f"chunk {chunk.name}: build_path {context} has no {dockerfile}")
            with self._errors(f"chunk {chunk.name}: building {ref} from {context}"):
                try:
                    image, _logs = self.client.images.build(
                        path=str(context),
                        dockerfile=spec.dockerfile,
                        buildargs=spec.build_args or None,
                        target=spec.build_target,
                        tag=ref,
                        rm=True,
                        forcerm=True,  # no leftovers from a failed build
                        labels={LABEL_MANAGED: "true", LABEL_DOMAIN: domain, LABEL_CHUNK: chunk.name},
                    )
                except docker.errors.BuildError as exc:
                    tail = " | ".join(
                        str(x.get("stream", x.get("error", ""))).strip() for x in list(exc.build_log)[-5:]
                    )
                    raise ImageError(f"chunk {chunk.name}: building {ref} failed: {exc.msg} ({tail})") from None
            return str(image.id)
        existing = self.image_id(ref)
        if existing:
            return existing
        try:
            with self._errors(f"pulling {ref}"):
                repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
                self.client.api.pull(repo, tag=tag or "latest")
        except EngineError as exc:
            raise ImageError(
                f"chunk {chunk.name}: image {ref} is not on this machine and could not be pulled ({exc}); "
                f"build or load it locally (docker build / docker load), or give the container a build_path"
            ) from None
        found = self.image_id(ref)
        if not found:
            raise ImageError(f"chunk {chunk.name}: image {ref} is still missing after a pull")
        return found

    # -- containers ------------------------------------------------------------------------------
    def inspect(self, name_or_id: str) -> ContainerState | None:
        with self._errors(f"inspecting container {name_or_id}"):
            try:
                info: ContainerInfo = self.client.api.inspect_container(name_or_id)
            except docker.errors.NotFound:
                return None
        state: StateRecord = info.get("State") or {}
        config: ConfigRecord = info.get("Config") or {}
        return ContainerState(
            id=info["Id"],
            name=info["Name"].lstrip("/"),
            status=state.get("Status", "unknown"),
            running=bool(state.get("Running")),
            exit_code=state.get("ExitCode"),
            labels=config.get("Labels") or {},
        )

    def container_names(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Every container on the engine by name, with its id and labels (any owner: only to know which names
        are free, and whether a taken one is pnr's; nothing is done to them)."""
        with self._errors("listing containers"):
            rows = self.client.api.containers(all=True)
        return {
            name.lstrip("/"): (row.get("Id", ""), row.get("Labels") or {})
            for row in rows
            for name in row.get("Names") or []
        }

    def owned_containers(self, domain: str) -> list[ContainerState]:
        with self._errors("listing containers"):
            rows = self.client.api.containers(all=True, filters={"label": [f"{LABEL_DOMAIN}={domain}"]})
        out = []
        for row in rows:
            labels = row.get("Labels") or {}
            if labels.get(LABEL_DOMAIN) != domain or labels.get(LABEL_MANAGED) != "true":
                continue  # belt and braces: never act on anything whose labels are not ours
            out.append(
                ContainerState(
                    id=row["Id"],
                    name=(row.get("Names") or ["/?"])[0].lstrip("/"),
                    status=row.get("State", "unknown"),
                    running=row.get("State") == "running",
                    exit_code=None,
                    labels=labels,
                )
            )
        return out

    def create_and_start(
        self,
        *,
        domain: str,
        cpux: str,
        chunk: DesignChunk,
        image_id: str,
        config_hash: str,
        flow_run_id: str,
        network: str,
        base_dir: Path,
        env: dict[str, str],
        runtime_dir: Path | None = None,
        spec_label: str = "",
        config_file: str = "",
    ) -> ContainerState:
        """Create and start a chunk's container; `runtime_dir` (if given) is bound at /runtime (read-write);
        `config_file` (the config's absolute path) is remembered in a label."""
        labels = {
            **chunk.container.labels,
            LABEL_MANAGED: "true",
            LABEL_DOMAIN: domain,
            LABEL_CPUX: cpux,
            LABEL_CHUNK: chunk.name,
            LABEL_HASH: config_hash,
            LABEL_RUN: flow_run_id,
            LABEL_SPEC: spec_label,
            **({LABEL_CONFIG: config_file} if config_file else {}),
        }
        binds = [self._bind(v, domain, base_dir) for v in chunk.container.volumes]
        if runtime_dir is not None:
            binds.append(f"{Path(runtime_dir).resolve()}:/runtime:rw")
        cid = self._create(chunk, image_id, network, env, labels, binds)
        self._start_new(chunk, cid)
        state = self.inspect(cid)
        if state is None:
            raise EngineError(f"chunk {chunk.name}: container {chunk.container.name} vanished right after it started")
        return state

    def _create(
        self,
        chunk: DesignChunk,
        image_id: str,
        network: str,
        env: dict[str, str],
        labels: dict[str, str],
        binds: list[str],
    ) -> str:
        """Create (not start) a chunk's container on `network`: its id."""
        spec = chunk.container
        api = self.client.api
        bindings = spec.port_bindings(self.port_ip).values()
        with self._errors(f"chunk {chunk.name}: creating container {spec.name}"), name_in_use(spec.name):
            host_config = api.create_host_config(
                port_bindings={f"{b.container_port}/{b.protocol}": (b.host_ip, b.host_port) for b in bindings},
                binds=binds or None,
                network_mode=network,
                init=spec.init or None,
            )
            created = api.create_container(
                image_id,
                command=spec.command_args(),
                entrypoint=spec.entrypoint_args(),
                working_dir=spec.working_dir,
                user=spec.user,
                stop_signal=spec.stop_signal,
                stop_timeout=stop_timeout(spec.stop_grace_period_seconds),
                name=spec.name,
                environment=env,
                labels=labels,
                ports=[(b.container_port, b.protocol) for b in bindings],
                host_config=host_config,
                networking_config=api.create_networking_config(
                    {network: api.create_endpoint_config(aliases=sorted({chunk.name, spec.name}))}
                ),
            )
        return str(created["Id"])

    def _start_new(self, chunk: DesignChunk, cid: str) -> None:
        """Start a container just created; if it cannot start, remove it (nothing half-created is left) and
        name a host port in use as such."""
        spec = chunk.container
        try:
            with self._errors(f"chunk {chunk.name}: starting container {spec.name}"):
                self.client.api.start(cid)
        except EngineError as exc:
            if not isinstance(exc, EngineUnreachable):  # a silent engine would hold the removal for a minute
                self.remove(cid)
            text = str(exc)
            if "port is already allocated" in text or "address already in use" in text:
                ports = ", ".join(f"{b.host_ip}:{b.host_port}" for b in spec.port_bindings(self.port_ip).values())
                raise EngineError(
                    f"chunk {chunk.name}: a host port of container {spec.name} is already in use ({ports}); "
                    f"stop what holds it or change container.ports. Engine said: {text.split(': ', 1)[-1]}"
                ) from None
            raise

    def _bind(self, volume: str, domain: str, base_dir: Path) -> str:
        source, target, mode = split_volume(volume)
        if is_host_path(source):
            return f"{host_path(source, base_dir)}:{target}" + (f":{mode}" if mode else "")
        with self._errors(f"creating volume {source}"):
            try:
                self.client.api.inspect_volume(source)
            except docker.errors.NotFound:
                self.client.api.create_volume(source, labels={LABEL_MANAGED: "true", LABEL_DOMAIN: domain})
        return volume

    def owned_volumes(self, domain: str) -> list[str]:
        with self._errors("listing volumes"):
            vols = (self.client.api.volumes(filters={"label": f"{LABEL_DOMAIN}={domain}"}) or {}).get("Volumes") or []
        return [v["Name"] for v in vols if (v.get("Labels") or {}).get(LABEL_DOMAIN) == domain]

    def remove_volume(self, name: str) -> None:
        with self._errors(f"removing volume {name}"), contextlib.suppress(docker.errors.NotFound):
            self.slow_client.api.remove_volume(name)

    def start(self, cid: str) -> None:
        """Start an existing (stopped) container again."""
        with self._errors(f"starting container {cid[:12]}"):
            self.client.api.start(cid)

    def stop(self, cid: str, timeout: float | None = None) -> None:
        """Stop: `timeout` seconds of grace after the stop signal if given (rounded up to whole seconds, as the
        engine keeps them), else the container's own stop_grace_period (recorded at creation), else 5 s."""
        with self._errors(f"stopping container {cid[:12]}"), contextlib.suppress(docker.errors.NotFound):
            grace = stop_timeout(timeout)
            if grace is None:
                configured = (self.client.api.inspect_container(cid).get("Config") or {}).get("StopTimeout")
                grace = configured if isinstance(configured, int) else DEFAULT_STOP_SECONDS
            self.client.api.stop(cid, timeout=grace)

    def remove(self, cid: str) -> None:
        with self._errors(f"removing container {cid[:12]}"):
            try:
                self.slow_client.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if "already in progress" not in str(exc):
                    raise

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        try:
            with self._errors("reading logs"):
                raw = self.client.api.logs(cid, tail=lines, stdout=True, stderr=True)
        except EngineError:
            return ""
        return raw.decode("utf-8", errors="replace").rstrip() if isinstance(raw, bytes) else str(raw)

    def logs_since(
        self, cid: str, *, since: float | None = None, tail: int | None = None, timestamps: bool = False
    ) -> list[str]:
        """A container's log lines (stdout and stderr as written), from `since` (epoch seconds) on and/or only the
        last `tail`; with `timestamps` each starts with the engine's RFC 3339 time. EngineError if unreadable."""
        with self._errors(f"reading logs of container {cid[:12]}"):
            raw = self.client.api.logs(
                cid,
                stdout=True,
                stderr=True,
                timestamps=timestamps,
                tail="all" if tail is None else tail,
                since=since if since and since > 0 else None,
            )
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        return text.splitlines()

    def logs_stream(
        self, cid: str, *, tail: int | None = None, timestamps: bool = False, since: float | None = None
    ) -> LogStream:
        """Follow a container's log: its lines so far (or the last `tail`), then new ones as they are written,
        until the container stops or `close()` is called (from any thread). EngineError if it cannot be opened."""
        with self._errors(f"following logs of container {cid[:12]}"):
            stream = self.client.api.logs(
                cid,
                stdout=True,
                stderr=True,
                stream=True,
                follow=True,
                timestamps=timestamps,
                tail="all" if tail is None else tail,
                since=since if since and since > 0 else None,
            )
        return LogStream(stream)

    # -- what probes ask -------------------------------------------------------------------------
    def exec_run(self, cid: str, command: list[str]) -> tuple[int | None, str]:
        """Run a command inside a running container: (exit code, stdout+stderr)."""
        api = self.client.api
        with self._errors(f"running {command[0]!r} in container {cid[:12]}"):
            created = api.exec_create(cid, command, stdout=True, stderr=True)
            raw = api.exec_start(created["Id"])
            code = api.exec_inspect(created["Id"]).get("ExitCode")
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        return code, text

    def logs_text(self, cid: str, stdout: bool = True, stderr: bool = True) -> str:
        """The whole log of a container (stdout and/or stderr). EngineError if unreadable."""
        with self._errors(f"reading logs of container {cid[:12]}"):
            raw = self.client.api.logs(cid, stdout=stdout, stderr=stderr)
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

    def health(self, cid: str) -> tuple[str | None, str]:
        """The image HEALTHCHECK status (starting | healthy | unhealthy; None: the image has none;
        HEALTH_NEVER_RUN: the engine runs no checks) and the last check's exit code and output."""
        with self._errors(f"inspecting container {cid[:12]}"):
            info = self.client.api.inspect_container(cid)
        return health_of(info, time.time())

    def container_ip(self, cid: str, network: str | None) -> str | None:
        """The container's IPv4 address on `network` (or its first network), None if it has none."""
        with self._errors(f"inspecting container {cid[:12]}"):
            info = self.client.api.inspect_container(cid)
        nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
        chosen = nets.get(network) if network else next(iter(nets.values()), None)
        ip = (chosen or {}).get("IPAddress")
        return str(ip) if ip else None


def engine_from_spec(name: str, spec: EngineSpec, base_dir: Path) -> Engine:
    """The `Engine` of one `engines` entry (TLS file paths relative to `base_dir`, the config's folder). A
    `context` is read from the docker CLI's context store now (UnknownContext if it holds no such context)."""
    if spec.context is not None:
        endpoint = resolve_context(spec.context, named_by=f"engines.{name}.context")
        return Engine(name=name, endpoint=endpoint, address=spec.reach_address(), port_ip=spec.port_ip())
    assert spec.host is not None  # the model holds exactly one of host and context
    tls = None
    if spec.tls is not None:
        files = {k: str((base_dir / Path(v).expanduser()).resolve()) for k, v in spec.tls.files().items()}
        try:
            tls = docker.tls.TLSConfig(
                client_cert=(files["cert"], files["key"]) if "cert" in files else None,
                ca_cert=files.get("ca"),
                verify=spec.tls.verify,
            )
        except docker.errors.TLSParameterError as exc:
            raise EngineError(f"engine {name}: tls: {exc}") from None
    return Engine(host=spec.host, name=name, address=spec.reach_address(), port_ip=spec.port_ip(), tls=tls)
