"""The Prefect floor: the lower bound (bench/lower_bound.py) with each service's wait, create, start and probe
run as a Prefect task of one flow run (one thread per task), against the server PREFECT_API_URL names.

It is what any tool pays that makes each container a Prefect task run — the task runs' states and events, the
client's engine, the server recording them — before any logic of its own: no retries, no logs of its own, no
custom events, no artifacts, no files. bench/cli.py reports (floor − lower bound) / chunks beside pnr's.

    PREFECT_API_URL=... python bench/prefect_floor.py STACK.json --prefix P --tag T
"""

from __future__ import annotations

from collections.abc import Callable

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


if __name__ == "__main__":
    lower_bound.main(execute=as_prefect_tasks)
