"""The lower bound: a minimal sequencer with docker-py. One thread per service waits for its dependencies'
readiness events, creates and starts the container at once, and polls its probe every POLL seconds.
Nothing else (no state store, no scheduler): the critical path of container start + time-to-ready."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stacks import BENCH_LABEL, Service, Stack

POLL = 0.005
Executor = Callable[[Callable[[Service], None], list[Service]], None]


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


def threads(one: Callable[[Service], None], services: list[Service]) -> None:
    """The lower bound's executor: one thread per service, all started at once."""
    pool = [threading.Thread(target=one, args=(s,), daemon=True) for s in services]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def run(client: Any, stack: Stack, prefix: str, network: str, tag: str, execute: Executor = threads) -> dict[str, Any]:
    """Bring `stack` up; `execute(one, services)` runs `one` for every service at once (bench/prefect_floor.py
    runs each as a Prefect task instead of a thread)."""
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
            ports = {f"{s.port}/tcp": (s.bind, s.host_port) if s.bind else s.host_port} if s.port else None
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

    c0 = time.process_time()
    execute(one, stack.services)
    if errors:
        raise RuntimeError("lower bound failed: " + "; ".join(errors[:5]))
    return {"wall": max(ready_at.values()) - t0, "t0": t0, "ready_at": ready_at, "cpu": time.process_time() - c0}


def main(argv: list[str] | None = None, execute: Executor = threads) -> None:
    """The lower bound as a whole process (bench/cli.py times it from the shell):

        python bench/lower_bound.py STACK.json --prefix P --tag T [--network N]

    STACK.json is `Stack.to_dict()`. Exits 0 once every service is ready (containers are left running; the caller
    removes them by label), 1 on failure; prints one JSON line: the in-process wall and CPU."""
    import docker

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", type=Path)
    parser.add_argument("--prefix", required=True, help="container name prefix")
    parser.add_argument("--tag", required=True, help=f"value of the {BENCH_LABEL} label")
    parser.add_argument("--network", help="network name [default: PREFIXnet]")
    args = parser.parse_args(argv)
    stack = Stack.from_dict(json.loads(args.stack.read_text()))
    try:
        res = run(
            docker.from_env(timeout=300), stack, args.prefix, args.network or f"{args.prefix}net", args.tag, execute
        )
    except Exception as exc:  # one line for the caller's log
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
    print(json.dumps({"wall": res["wall"], "cpu": res["cpu"]}), flush=True)


if __name__ == "__main__":
    main()
