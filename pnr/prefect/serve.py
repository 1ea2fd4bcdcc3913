"""`pnr serve`: one process that serves the bring-up and tear-down deployments of some configs (Prefect `serve`),
for a single machine without a work pool or worker. Runs started from the UI, the CLI (`prefect deployment run
pnr-up/<name>`), an automation or a schedule execute in this process's machine, against its Docker engine.

Deployment names follow prefect.yaml: the config file's stem with dashes (`config/example_chain.json` →
`pnr-up/example-chain` and `pnr-down/example-chain`). Schedules (weekdays 07:00 up, 20:00 down by default) are
attached inactive unless asked for, as in prefect.yaml: nothing starts by surprise.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pnr.model.plan import load_plan

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule

DEFAULT_UP_CRON = "0 7 * * 1-5"
DEFAULT_DOWN_CRON = "0 20 * * 1-5"


def deployment_name(config_path: str | Path) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", Path(config_path).stem.lower()).strip("-") or "domain"


@dataclass(frozen=True)
class ServeOptions:
    runtime_dir: str | None = None
    timeout_seconds: float | None = None  # None: the PNR_TIMEOUT_SECONDS setting
    up_cron: str | None = DEFAULT_UP_CRON
    down_cron: str | None = DEFAULT_DOWN_CRON
    timezone: str = "UTC"
    schedules_active: bool = False


def build_deployments(configs: list[str | Path], options: ServeOptions = ServeOptions()) -> list[RunnerDeployment]:
    """Two RunnerDeployments per config (bring-up, tear-down). Every config is validated first (ConfigError)."""
    from prefect.schedules import Cron

    from pnr.prefect.flows import bring_up, tear_down

    out: list[RunnerDeployment] = []
    names: dict[str, str] = {}
    for config in configs:
        plan = load_plan(str(config))
        path = str(Path(config).resolve())  # the serving process may be started anywhere: absolute paths
        name = deployment_name(config)
        if name in names:
            raise ValueError(f"{config} and {names[name]} would both be served as {name!r}; rename one file")
        names[name] = str(config)
        domain = plan.domain.name
        runtime = str(Path(options.runtime_dir).resolve()) if options.runtime_dir else None

        def schedules(cron: str | None) -> list[Schedule]:
            return [Cron(cron, timezone=options.timezone, active=options.schedules_active)] if cron else []

        out.append(
            _made(
                bring_up.to_deployment(
                    name=name,
                    description=f"Bring up {domain} ({config}) in order of readiness.",
                    tags=["pnr", f"domain:{domain}", *(f"cpux:{c}" for c in plan.cpux_order), "bring-up"],
                    parameters={
                        "config_path": path,
                        "cpux": None,
                        "timeout_seconds": options.timeout_seconds,
                        "runtime_dir": runtime,
                    },
                    schedules=schedules(options.up_cron),
                )
            )
        )
        out.append(
            _made(
                tear_down.to_deployment(
                    name=name,
                    description=f"Tear down {domain} ({config}): only what pnr created, by labels.",
                    tags=["pnr", f"domain:{domain}", "tear-down"],
                    parameters={"config_path": path, "runtime_dir": runtime, "volumes": False},
                    schedules=schedules(options.down_cron),
                )
            )
        )
    return out


def _made(deployment: RunnerDeployment | Coroutine[object, object, RunnerDeployment]) -> RunnerDeployment:
    """What `to_deployment` made: called outside an event loop, the deployment itself (not a coroutine)."""
    from prefect.deployments.runner import RunnerDeployment

    assert isinstance(deployment, RunnerDeployment)
    return deployment


def serve_configs(configs: list[str | Path], options: ServeOptions = ServeOptions(), limit: int | None = None) -> None:
    """Block, serving the deployments (Ctrl-C stops; Prefect pauses their schedules on shutdown)."""
    from prefect import serve

    serve(*build_deployments(configs, options), limit=limit, print_starting_message=True)
