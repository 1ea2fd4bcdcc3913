"""The lower bound: a minimal sequencer with docker-py. One thread per service waits for its dependencies'
readiness events, creates and starts the container at once, and polls its probe every POLL seconds.
Nothing else (no state store, no scheduler): the critical path of container start + time-to-ready."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any

from stacks import BENCH_LABEL, Service, Stack

POLL = 0.005


def _http_ok(s: Service) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", s.host_port, timeout=1)
    try:
        conn.request("GET", s.path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and (s.body_contains is None or s.body_contains.encode() in body)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _redis_ok(s: Service) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", s.host_port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def run(client: Any, stack: Stack, prefix: str, network: str, tag: str) -> dict[str, Any]:
    api = client.api
    ready = {s.name: threading.Event() for s in stack.services}
    ready_at: dict[str, float] = {}
    errors: list[str] = []
    t0 = time.time()
    api.create_network(network, driver="bridge", labels={BENCH_LABEL: tag})

    def one(s: Service) -> None:
        try:
            for d in s.deps:
                ready[d].wait()
            ports = {f"{s.port}/tcp": ("127.0.0.1", s.host_port)} if s.port else None
            cid = api.create_container(
                s.image,
                command=s.command,
                name=f"{prefix}{s.name}",
                environment=s.env or None,
                labels={BENCH_LABEL: tag},
                ports=[s.port] if s.port else None,
                host_config=api.create_host_config(port_bindings=ports, network_mode=network),
                networking_config=api.create_networking_config({network: api.create_endpoint_config(aliases=[s.name])}),
            )["Id"]
            api.start(cid)
            check = {"http": _http_ok, "redis": _redis_ok}.get(s.probe or "")
            deadline = time.monotonic() + 120
            while check is not None and not check(s):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{s.name} not ready in 120 s")
                time.sleep(POLL)
            ready_at[s.name] = time.time()
        except Exception as exc:  # reported, and the run counts as failed
            errors.append(f"{s.name}: {exc}")
            ready_at.setdefault(s.name, float("nan"))
        finally:
            ready[s.name].set()

    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in stack.services]
    c0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("lower bound failed: " + "; ".join(errors[:5]))
    return {"wall": max(ready_at.values()) - t0, "t0": t0, "ready_at": ready_at, "cpu": time.process_time() - c0}
