"""`pnr doctor`: what pnr would use on this machine and whether it works — platform and versions, the Docker
engine (where it was found and why), pnr's Prefect backend, the runtime folder. Reads only: it starts, creates
and changes nothing. Exit 0 when all is well, else each problem with its fix and exit 1."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from pnr.cli.common import escape, out
from pnr.exceptions import PnrError


@dataclass
class Problem:
    what: str
    fix: str


Fact = str | bool | list[str]  # a line of the report (a list: one line each)
Section = dict[str, Fact]


@dataclass
class Report:
    """Sections of facts (name -> value) and the problems found."""

    sections: dict[str, Section] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, what: str, fix: str) -> None:
        self.problems.append(Problem(what, fix))


def _version(package: str) -> str:
    from importlib import metadata  # here: every command line imports this module, few ask for versions

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_platform(report: Report) -> None:
    report.sections["platform"] = {
        "system": platform.platform(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "pnr": _version("pnr"),
        "prefect": _version("prefect"),
        "docker-py": _version("docker"),
    }


def engine_facts(version: Mapping[str, object], info: Mapping[str, object]) -> Section:
    """Server version, OS/arch, product and rootless from the engine's /version and /info answers (Docker's
    and Podman's Docker-compatible API alike)."""
    components = [str(c.get("Name", "")) for c in _items(version.get("Components")) if isinstance(c, dict)]
    product = next((c for c in components if "podman" in c.lower()), None) or "Docker Engine"
    rootless = any("name=rootless" in str(s) for s in _items(info.get("SecurityOptions")))
    return {
        "product": product,
        "server version": str(version.get("Version", "?")),
        "api version": str(version.get("ApiVersion", "?")),
        "os/arch": f"{version.get('Os', '?')}/{version.get('Arch', '?')}",
        "rootless": rootless,
        "name": str(info.get("Name", "?")),
    }


def _items(value: object) -> list[object]:
    """A JSON list of an engine's answer; anything else (absent, null) as no items."""
    return list(value) if isinstance(value, list) else []


def check_engine(report: Report) -> None:
    from pnr.engines.engine import Engine
    from pnr.engines.resolve import unreachable_hint

    section: Section = {}
    report.sections["engine"] = section
    engine = Engine()
    try:
        endpoint = engine.endpoint
    except PnrError as exc:
        section["endpoint"] = "not resolved"
        report.problem(f"engine: {exc}", "fix the context named, or `docker context use default`, or set DOCKER_HOST")
        return
    section["endpoint"] = endpoint.host
    section["from"] = endpoint.source
    section["looked at"] = list(endpoint.tried)
    try:
        api = engine.client.api
        section.update(engine_facts(api.version(), api.info()))
    except PnrError as exc:
        reason = str(exc).splitlines()[0]
        report.problem(f"engine: {reason}", unreachable_hint(endpoint).replace("\n", " "))
    except Exception as exc:  # an answer pnr cannot read: say so, do not crash the report
        report.problem(f"engine: unexpected answer ({type(exc).__name__}: {exc})", "check the engine's version")


def check_backend(report: Report) -> None:
    from pnr.backend import runner, server
    from pnr.settings import get_settings

    section: Section = {}
    report.sections["backend"] = section
    settings = get_settings()
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        section["kind"] = f"external Prefect server (PREFECT_API_URL={api_url}); pnr's own server is not used"
        return
    if settings.ephemeral_server:
        section["kind"] = "a throw-away Prefect server per command (PNR_EPHEMERAL_SERVER)"
        return
    state_dir = server.default_state_dir()
    section["kind"] = "pnr's resident Prefect server and runner"
    section["state dir"] = str(state_dir)
    section["database"] = "postgresql" if settings.server_database_url else "sqlite"
    info = server.status(state_dir=state_dir)
    if info is None:
        section["server"] = "not running (the next `pnr up` starts it)"
    else:
        section["server"] = f"pid {info.pid}, {'healthy' if info.healthy else 'NOT healthy'}"
        section["api"], section["ui"], section["database"] = info.api_url, info.ui_url, info.database
        if not info.healthy:
            report.problem(
                f"backend: pnr's Prefect server (pid {info.pid}) does not answer at {info.api_url}",
                f"`pnr server logs` says why; `pnr server stop` then `pnr server start` (state dir {state_dir})",
            )
    pong = runner.runner_status(state_dir) if info is not None else None
    if not settings.runner:
        section["runner"] = "off (PNR_RUNNER=0): runs execute in the `pnr up` process"
    elif pong is None:
        section["runner"] = "not running (the next `pnr up` starts it)"
    else:
        same = pong.get("engine") == runner.engine_env()
        section["runner"] = f"pid {pong.get('pid')}, pool of {pong.get('pool')}, {pong.get('active', 0)} run(s) active"
        section["runner engine"] = "same as this shell's" if same else "another engine: `pnr up` runs in-process"
    _check_writable(report, "state dir", state_dir, "set PNR_STATE_DIR to a folder you can write")


def check_runtime(report: Report) -> None:
    from pnr.settings import resolve_runtime_dir

    try:
        folder = resolve_runtime_dir(None)
    except PnrError as exc:
        report.problem(f"runtime folder: {exc}", "set PNR_RUNTIME_DIR or pass --runtime-dir to a folder")
        return
    report.sections["runtime"] = {"folder": str(folder.resolve())}
    _check_writable(
        report, "runtime folder", folder, "set PNR_RUNTIME_DIR (or --runtime-dir) to a folder you can write"
    )


def _check_writable(report: Report, what: str, folder: Path, fix: str) -> None:
    """The folder, or the nearest existing folder above it (pnr creates the rest), is writable."""
    probe = folder.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        report.problem(f"{what}: {probe} is not a folder", fix)
    elif not os.access(probe, os.W_OK | os.X_OK):
        report.problem(f"{what}: {probe} is not writable by this user", fix)


def diagnose() -> Report:
    report = Report()
    check_platform(report)
    check_engine(report)
    check_backend(report)
    check_runtime(report)
    return report


def render(report: Report) -> None:
    for name, section in report.sections.items():
        out.print(f"[bold]{name}[/]")
        for key, value in section.items():
            if isinstance(value, list):
                out.print(f"  {key}:")
                for item in value:
                    out.print(f"    {escape(str(item))}")
            else:
                out.print(f"  {key}: {escape(str(value))}")
    if not report.problems:
        out.print("[green]all is well[/]")
        return
    out.print(f"[bold red]{len(report.problems)} problem(s):[/]")
    for problem in report.problems:
        out.print(f"  [red]{escape(problem.what)}[/]\n    to fix: {escape(problem.fix)}")


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """What pnr would use here (platform, versions, the Docker engine and where it was found, the Prefect
    backend, the runtime folder) and whether it works. Starts nothing. Exit 1 if anything needs fixing."""
    report = diagnose()
    if as_json:
        data = {**report.sections, "ok": not report.problems, "problems": [asdict(p) for p in report.problems]}
        print(json.dumps(data, indent=2, default=str))
    else:
        render(report)
    if report.problems:
        raise typer.Exit(1)
