"""The benchmark's stacks, described once and rendered three ways: a pnr domain config, a docker-compose
file (same images, same readiness check run inside the container), and the lower bound's service list."""

from __future__ import annotations

import random
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

BUSYBOX = "pnr-test/busybox:1"
HTTPD_AFTER_HALF_SECOND = ["sh", "-c", "sleep 0.5; exec httpd -f -p 8080 -h /www"]
# PID 1 ignores SIGTERM unless it traps it: without the trap `docker stop` (and `pnr down`, `docker-compose down`)
# waits its whole timeout per container. Same readiness: answers HTTP 200 `delay` seconds after start.
HTTPD_AFTER_TRAP = 'trap "exit 0" TERM; sleep {delay}; httpd -f -p 8080 -h /www & wait'
SLEEP_TRAP = ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait']
BENCH_LABEL = "pnr.bench.run"


def remove_containers(api: Any, containers: list[str]) -> None:
    """Force-remove containers (ids or names) as `pnr down` does, DOWN_PARALLEL at a time: Docker 20.10 loses count
    of a network's endpoints when many of its containers go at once, and its libnetwork can deadlock then (every
    network call of the engine hangs until dockerd restarts; moby/moby#46661, seen twice at 8 at once on 2026-12-03)."""
    from concurrent.futures import ThreadPoolExecutor

    from pnr.lifecycle.ops import DOWN_PARALLEL

    if containers:
        with ThreadPoolExecutor(min(DOWN_PARALLEL, len(containers))) as pool:
            list(pool.map(lambda c: api.remove_container(c, force=True, v=True), containers))


@dataclass
class Service:
    name: str
    image: str
    deps: list[str] = field(default_factory=list)
    command: list[str] | None = None
    port: int | None = None  # container port, published on 127.0.0.1:host_port and probed there
    host_port: int | None = None
    probe: str | None = None  # "http" | "redis" | None (ready = container started)
    path: str = "/"
    body_contains: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] | None = None  # compose: the same readiness, run inside the container
    bind: str = "127.0.0.1"  # host address the port is published on; "": every address (`"PORT": "PORT"`)
    probe_interval: float | None = None  # pnr's probe: interval_seconds (None: the bench's --pnr-probe-interval)
    probe_deadline: float | None = 120.0  # pnr's probe: deadline_seconds (None: no deadline)


@dataclass
class Stack:
    name: str
    services: list[Service]
    kind: str = "probe"  # "probe" stacks vs "scale" stacks (no probe: ready = running)

    def by_name(self) -> dict[str, Service]:
        return {s.name: s for s in self.services}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stack:
        return cls(data["name"], [Service(**s) for s in data["services"]], data.get("kind", "probe"))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free host port not handed out before in this process, below the kernel's ephemeral range: the kernel
    may give the same free port twice in a row (two services of one stack on one port made a `pnr up` of the
    benchmark fail, exit 2, rightly), and a port from that range may be taken by an outgoing connection (the
    Prefect client's, the engine's) before the container publishes it: `docker start` then fails with "port is
    already allocated". The test suite uses it too (tests/conftest.py)."""
    while True:
        port = random.randint(20000, _ephemeral_low() - 1)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _httpd(name: str, deps: list[str], delay: float | None = None) -> Service:
    """busybox httpd answering 200 on 8080: 0.5 s after start (no TERM trap), or `delay` s after (TERM trapped)."""
    return Service(
        name=name,
        image=BUSYBOX,
        deps=deps,
        command=HTTPD_AFTER_HALF_SECOND if delay is None else ["sh", "-c", HTTPD_AFTER_TRAP.format(delay=delay)],
        port=8080,
        host_port=free_port(),
        probe="http",
        healthcheck=["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    )


def chain(n: int = 10, delay: float | None = None) -> Stack:
    """s0 → s1 → … → s(n-1); see `_httpd` for `delay`."""
    return Stack(f"chain{n}", [_httpd(f"s{i}", [f"s{i - 1}"] if i else [], delay) for i in range(n)])


OUTSIDE_HTTPD = "sleep 1; exec httpd -f -p {port} -h /www"


def outside(n: int = 6) -> Stack:
    """The chain an outside harness measured: s0 → … → s(n-1), each `sh -c "sleep 1; exec httpd -f -p PORT -h
    /www"` listening on its host port inside the container too, published as `"PORT": "PORT"` (no address), an
    http probe on / every 0.02 s with a 1 s timeout and no deadline. Unlike chain6, httpd is PID 1 without a TERM
    trap: a stop waits for the grace period (it is not timed)."""
    services = []
    for i in range(n):
        port = free_port()
        services.append(
            Service(
                name=f"s{i}",
                image=BUSYBOX,
                deps=[f"s{i - 1}"] if i else [],
                command=["sh", "-c", OUTSIDE_HTTPD.format(port=port)],
                port=port,
                host_port=port,
                probe="http",
                healthcheck=["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/"],
                bind="",
                probe_interval=0.02,
                probe_deadline=None,
            )
        )
    return Stack(f"outside{n}", services)


def fanout(n: int = 30) -> Stack:
    return Stack(f"fanout1x{n}", [_httpd("root", [])] + [_httpd(f"leaf{i}", ["root"]) for i in range(n)])


def diamond() -> Stack:
    """top → (left, right) → bottom: the bottom waits on both sides."""
    return Stack(
        "diamond",
        [_httpd("top", []), _httpd("left", ["top"]), _httpd("right", ["top"]), _httpd("bottom", ["left", "right"])],
    )


def demo() -> Stack:
    """config/dev_stack.json's three tiers (redis → api → web) with the locally built demo images."""
    py = (
        "import urllib.request as u,sys; b=u.urlopen('http://127.0.0.1:{}{}',timeout=2).read(); "
        "sys.exit(b'{}' not in b)"
    )
    return Stack(
        "demo",
        [
            Service(
                "redis",
                "pnr-demo/redis:1",
                port=6379,
                host_port=free_port(),
                probe="redis",
                healthcheck=["CMD", "redis-cli", "ping"],
            ),
            Service(
                "api",
                "pnr-demo/api:1",
                ["redis"],
                port=8000,
                host_port=free_port(),
                probe="http",
                path="/health",
                env={"REDIS_HOST": "redis"},
                healthcheck=["CMD", "python3", "-c", py.format(8000, "/health", "ok")],
            ),
            Service(
                "web",
                "pnr-demo/web:1",
                ["api"],
                port=80,
                host_port=free_port(),
                probe="http",
                body_contains="greeting",
                env={"API_HOST": "api"},
                healthcheck=["CMD", "python3", "-c", py.format(80, "/", "greeting")],
            ),
        ],
    )


def layered(total: int, depth: int = 10, command: list[str] | None = None) -> Stack:
    """`total` sleeping containers in `depth` layers; each waits on one container of the layer above.
    `command` defaults to `sleep 3600` (SLEEP_TRAP: the same, stopped at once by `docker stop`)."""
    width = total // depth
    services = [
        Service(f"c{i:03d}", BUSYBOX, [f"c{i - width:03d}"] if i >= width else [], command=command or ["sleep", "3600"])
        for i in range(width * depth)
    ]
    return Stack(f"scale{width * depth}", services, kind="scale")


# -- renderings ------------------------------------------------------------------------------------------
def pnr_config(stack: Stack, domain: str, prefix: str, tag: str, interval: float = 0.05) -> dict[str, Any]:
    """The pnr domain of `stack`; its probes attempt every `interval` seconds."""
    chunks = []
    for s in stack.services:
        pnr_tv = {"prompt": f"is {s.name} ready?", "response": ["yes"], "tv": "Y"}
        gate = {f"{d}_ready": {**pnr_tv, "prompt": f"is {d} ready?"} for d in s.deps} or {
            "system_ready": {"prompt": "is system ready?", "response": ["yes"], "tv": "Y"}
        }
        container: dict[str, Any] = {"name": f"{prefix}{s.name}", "image": s.image, "labels": {BENCH_LABEL: tag}}
        if s.command:
            container["command"] = s.command
        if s.env:
            container["env"] = s.env
        if s.port:
            container["ports"] = {str(s.port): f"{s.bind}:{s.host_port}" if s.bind else str(s.host_port)}
        chunk: dict[str, Any] = {
            "name": s.name,
            "gatekeeper": gate,
            "flowout": {f"{s.name}_ready": pnr_tv},
            "container": container,
        }
        if s.probe:
            check: dict[str, Any] = {
                "type": "tcp" if s.probe == "redis" else "http",
                "port_key": str(s.port),
                "timeout_seconds": 1,
                "interval_seconds": interval if s.probe_interval is None else s.probe_interval,
                "status_mapping": {
                    "success": {"key": f"{s.name}_ready", "response": ["yes"], "tv": "Y"},
                    "failure": {"key": f"{s.name}_ready", "response": ["no"], "tv": "N"},
                },
            }
            if s.probe_deadline is not None:
                check["deadline_seconds"] = s.probe_deadline
            if s.probe == "http":
                check.update(path=s.path, expected_code=200)
                if s.body_contains:
                    check["body_contains"] = s.body_contains
            chunk["health_check"] = check
        chunks.append(chunk)
    return {"name": domain, "cpuxs": {"bench": {"design_chunks": chunks}}}


def compose_file(stack: Stack, prefix: str, tag: str, interval: str) -> dict[str, Any]:
    """docker-compose 1.29.2 format 2.4: `depends_on: condition: service_healthy` (service_started without a probe)."""
    services: dict[str, Any] = {}
    for s in stack.services:
        svc: dict[str, Any] = {"image": s.image, "container_name": f"{prefix}{s.name}", "labels": {BENCH_LABEL: tag}}
        if s.command:
            svc["command"] = s.command
        if s.env:
            svc["environment"] = s.env
        if s.port:
            svc["ports"] = [f"{s.bind}:{s.host_port}:{s.port}" if s.bind else f"{s.host_port}:{s.port}"]
        if s.healthcheck:
            svc["healthcheck"] = {
                "test": s.healthcheck,
                "interval": interval,
                "timeout": "2s",
                "retries": 10_000,
                "start_period": "0s",
            }
        if s.deps:
            cond = "service_healthy" if stack.kind == "probe" else "service_started"
            svc["depends_on"] = {d: {"condition": cond} for d in s.deps}
        services[s.name] = svc
    return {"version": "2.4", "services": services, "networks": {"default": {"labels": {BENCH_LABEL: tag}}}}


ALL = {
    "chain10": chain,
    "fanout1x30": fanout,
    "diamond": diamond,
    "outside6": outside,
    "demo": demo,
    "scale100": lambda: layered(100),
    "scale500": lambda: layered(500),
}
