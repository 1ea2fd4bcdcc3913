"""The Prefect floor: the lower bound (bench/lower_bound.py) with each service's wait, create, start and probe
run as a Prefect task of one flow run (one thread per task), against the server PREFECT_API_URL names.

It is what any tool pays that makes each container a Prefect task run — the task runs' states and events, the
client's engine, the server recording them — before any logic of its own: no retries, no logs of its own, no
custom events, no artifacts, no files. bench/cli.py reports (floor − lower bound) / chunks beside pnr's.

    PREFECT_API_URL=... python bench/prefect_floor.py STACK.json --prefix P --tag T [--probe-task]

`--probe-task`: each service's probe loop runs as a nested task of its service's task, the shape pnr's runs
have (the brief asks for the health check as sub-tasks of the chunk's task): two task runs per container.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import lower_bound
from stacks import Service


def as_prefect_tasks(one: Callable[[Service], None], services: list[Service]) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.futures import wait
    from prefect.task_runners import ThreadPoolTaskRunner

    @task(name="service", cache_policy=NO_CACHE, persist_result=False)
    def service(s: Service) -> None:
        one(s)  # waits for its dependencies' readiness in the task, as a pnr chunk waits for its gate

    @flow(name="prefect-floor", persist_result=False, validate_parameters=False)
    def floor() -> None:
        wait([service.with_options(task_run_name=s.name).submit(s) for s in services])

    floor.with_options(task_runner=ThreadPoolTaskRunner(max_workers=len(services) + 2))()  # type: ignore[arg-type]


_probe_task: Any = None


def probe_as_task(probe: Callable[[Service], None], s: Service) -> None:
    """The service's probe loop as a nested Prefect task run (one per service, as pnr's probe sub-task)."""
    global _probe_task
    if _probe_task is None:
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        _probe_task = task(name="probe", cache_policy=NO_CACHE, persist_result=False)(lambda p, s: p(s))
    _probe_task.with_options(task_run_name=f"{s.name}.probe")(probe, s)


if __name__ == "__main__":
    nested = "--probe-task" in sys.argv
    argv = [a for a in sys.argv[1:] if a != "--probe-task"]
    lower_bound.main(argv, execute=as_prefect_tasks, run_probe=probe_as_task if nested else lower_bound._call)
