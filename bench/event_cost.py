"""What one Prefect event costs pnr's Prefect server, in CPU: N events shaped like pnr's chunk events (a resource
and four related resources, `--related` fewer), sent through Prefect's events websocket (`emit_event`, as a flow
run sends them) and in batches over HTTP (`POST /api/events`), with the server's CPU read from /proc before and
after (its idle CPU over the same time taken off). Needs pnr's server running (`pnr server start`).

    .venv/bin/python bench/event_cost.py [--events 1000] [--batch 50] [--related 4]

Prints one line per transport and a JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli import tree_cpu

from pnr.backend import server
from pnr.settings import quiet_prefect_env

SETTLE = 6.0  # seconds for the server to record what it received (its persister flushes in batches)


def _event(i: int, related: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "event": "pnr.chunk.ready",
        "resource": {"prefect.resource.id": f"pnr.chunk.bench.c{i}", "pnr.domain": "bench", "pnr.chunk": f"c{i}"},
        "related": related,
        "payload": {"cpux": "bench", "phase": "ready", "detail": f"c{i} ready"},
    }


RELATED = 4  # pnr's chunk events: flow run, task run, flow (Prefect adds them) and the domain; --related


def _related(count: int) -> list[dict[str, str]]:
    kinds = ("flow-run", "task-run", "flow")
    related = [
        *({"prefect.resource.id": f"prefect.{k}.{uuid.uuid4()}", "prefect.resource.role": k} for k in kinds),
        {"prefect.resource.id": "pnr.domain.bench", "prefect.resource.role": "domain"},
    ]
    return related[:count]


def send_websocket(n: int, count: int) -> None:
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    related = _related(count)
    for i in range(n):
        emit_event(**_event(i, related))
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)  # its "Still processing items" while it drains
    EventsWorker.drain_all()


def send_http(n: int, batch: int, count: int) -> None:
    import httpx
    from prefect.events import Event

    related = _related(count)
    events = [json.loads(Event(**_event(i, related)).model_dump_json()) for i in range(n)]
    with httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=60) as client:
        for k in range(0, n, batch):
            client.post("/events", json=events[k : k + batch]).raise_for_status()


def measure(pid: int, send: Any, n: int) -> dict[str, float]:
    idle0, t_idle = tree_cpu(pid), time.monotonic()
    time.sleep(3.0)
    idle_rate = (tree_cpu(pid) - idle0) / (time.monotonic() - t_idle)
    cpu0, t0 = tree_cpu(pid), time.monotonic()
    send(n)
    sent = time.monotonic() - t0
    time.sleep(SETTLE)
    cpu = tree_cpu(pid) - cpu0 - idle_rate * (time.monotonic() - t0)
    return {"send_seconds": sent, "server_cpu": cpu, "ms_per_event": 1000 * cpu / n, "idle_cpu_per_s": idle_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50, help="events per HTTP request")
    parser.add_argument("--related", type=int, default=RELATED, choices=range(5), help="related resources per event")
    args = parser.parse_args()
    record = server.running()
    if record is None:
        raise SystemExit("pnr's Prefect server is not running: `pnr server start` first")
    os.environ["PREFECT_API_URL"] = record.api_url
    for key, value in quiet_prefect_env().items():  # before Prefect is imported: its console logging off
        os.environ.setdefault(key, value)
    results = {
        "websocket": measure(record.pid, lambda n: send_websocket(n, args.related), args.events),
        f"http (batches of {args.batch})": measure(
            record.pid, lambda n: send_http(n, args.batch, args.related), args.events
        ),
    }
    for name, r in results.items():
        print(f"{name}: {args.events} events, server CPU {r['server_cpu']:.2f} s = {r['ms_per_event']:.2f} ms/event")
    print(json.dumps({"events": args.events, **results}))


if __name__ == "__main__":
    main()
