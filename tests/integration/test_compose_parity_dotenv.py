"""A compose project as its users run it, on the real engine: a folder with `.env` (profiles, values for
valueless `environment` entries, `${VAR}` in env and image) and an override file, imported and brought up by
`pnr up` — and by the `pnr-up` deployment run by a Prefect worker — with nothing exported: every container's
env is what `docker-compose config` (1.29.2) gives for the same folder."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_IMAGE, pnr_cli

from .test_deployments import deployed, flow_run_state, prefect_server, run_deployment, worker_run_once

pytestmark = [pytest.mark.docker, pytest.mark.slow]
__all__ = ["deployed", "prefect_server"]  # fixtures of the deployment test, used here

COMPOSE = """
    services:
      db:
        image: "${IMAGE}"
        command: [sleep, "600"]
        init: true
        environment:
          - POSTGRES_PASSWORD
          - "GREETING=hello ${WHO}"
      app:
        image: "${IMAGE}"
        command: [sleep, "600"]
        init: true
        depends_on: [db]
        environment:
          TOKEN: "${APP_TOKEN}"
          LEVEL: "${LEVEL:-info}"
      debug:
        image: "${IMAGE}"
        command: [sleep, "600"]
        init: true
        profiles: [debug]
        environment: [WHO]
"""
OVERRIDE = """
    services:
      app:
        environment:
          EXTRA: from-override
          LEVEL: debug
"""
DOTENV = f"""
    COMPOSE_PROFILES=debug
    IMAGE={TEST_IMAGE}
    POSTGRES_PASSWORD=s3cr3t
    WHO=world
    APP_TOKEN='t0k$en'
"""
VARIABLES = ("COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "IMAGE", "POSTGRES_PASSWORD", "WHO", "APP_TOKEN", "LEVEL")


@pytest.fixture(autouse=True)
def nothing_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the project's variables in this process's environment (which pnr_cli passes on)."""
    for key in VARIABLES:
        monkeypatch.delenv(key, raising=False)


def clean_env() -> dict[str, str]:
    """This environment without any of the project's variables: nothing is exported."""
    return {k: v for k, v in os.environ.items() if k not in VARIABLES}


def project(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, text in (("compose.yaml", COMPOSE), ("compose.override.yaml", OVERRIDE), (".env", DOTENV)):
        (folder / file).write_text(textwrap.dedent(text))
    return folder


def compose_config_env(docker_compose: str, folder: Path) -> dict[str, dict[str, str]]:
    """Each service's environment as `docker-compose config` resolves it (`$$` is its escape for `$`)."""
    proc = subprocess.run(
        [docker_compose, "config"], cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    return {
        name: {k: str(v).replace("$$", "$") for k, v in (svc.get("environment") or {}).items()}
        for name, svc in services.items()
    }


def container_env(docker_client: Any, domain: str) -> dict[str, dict[str, str]]:
    """Each chunk's container env, as the engine runs it."""
    out = {}
    for c in docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}):
        env = c.attrs["Config"]["Env"] or []
        out[c.labels["io.pnr.chunk"]] = dict(item.split("=", 1) for item in env)
    return out


def imported(tmp_path: Path, folder: Path) -> Path:
    out = tmp_path / "out"
    made = pnr_cli("import", str(folder), "-o", f"{out}/", env=clean_env())
    assert made.returncode == 0, made.stderr
    return out / f"{folder.name}.json"


def assert_same_env(ours: dict[str, dict[str, str]], compose: dict[str, dict[str, str]]) -> None:
    assert set(ours) == set(compose) == {"db", "app", "debug"}  # the debug profile, enabled by .env
    for service, env in compose.items():
        assert {k: ours[service].get(k) for k in env} == env, service


def test_pnr_up_runs_the_project_with_its_dotenv(
    tmp_path: Path, docker_client: Any, docker_compose: str, cleanup: list[str]
) -> None:
    name = f"pnrdotenv{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    folder = project(tmp_path, name)
    domain_file = imported(tmp_path, folder)
    runtime = tmp_path / "runtime"
    up = pnr_cli(
        "up", str(domain_file), "--runtime-dir", str(runtime), "--timeout", "120", env=clean_env(), timeout=300
    )
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert_same_env(container_env(docker_client, name), compose_config_env(docker_compose, folder))
    finally:
        pnr_cli("down", str(domain_file), "--runtime-dir", str(runtime), "-t", "0", env=clean_env())


def test_the_pnr_up_deployment_runs_it_too(
    tmp_path: Path, docker_client: Any, docker_compose: str, cleanup: list[str], prefect_server: Any, deployed: Any
) -> None:
    name = f"pnrdotenvdep{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    folder = project(tmp_path, name)
    domain_file = imported(tmp_path, folder)
    runtime = tmp_path / "runtime"
    run_id = run_deployment(
        prefect_server, "pnr-up/example-chain", config_path=str(domain_file), runtime_dir=str(runtime)
    )
    try:
        worker = worker_run_once(prefect_server)
        assert flow_run_state(prefect_server, run_id) == "COMPLETED", worker.stdout[-4000:] + worker.stderr[-4000:]
        assert_same_env(container_env(docker_client, name), compose_config_env(docker_compose, folder))
    finally:
        pnr_cli("down", str(domain_file), "--runtime-dir", str(runtime), "-t", "0", env=clean_env())


def test_pnr_up_env_file_gives_the_values_a_domain_does_not_name(
    tmp_path: Path, docker_client: Any, docker_compose: str, cleanup: list[str]
) -> None:
    """`pnr up --env-file F` (relative to the working folder, as compose's option) for a domain without env_files."""
    name = f"pnrenvfile{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    folder = project(tmp_path, name)
    domain_file = imported(tmp_path, folder)
    data = json.loads(domain_file.read_text())
    assert data.pop("env_files") == ["../" + name + "/.env"]
    domain_file.write_text(json.dumps(data))
    runtime = tmp_path / "runtime"
    unset = pnr_cli("up", str(domain_file), "--runtime-dir", str(runtime), env=clean_env())
    assert unset.returncode == 2 and "POSTGRES_PASSWORD" in unset.stderr and "Traceback" not in unset.stderr
    assert docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={name}"}) == []  # nothing started
    args = ("--runtime-dir", str(runtime), "--env-file", f"{name}/.env", "--timeout", "120")
    up = pnr_cli("up", str(domain_file), *args, cwd=tmp_path, env=clean_env(), timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert_same_env(container_env(docker_client, name), compose_config_env(docker_compose, folder))
    finally:
        pnr_cli("down", str(domain_file), "--runtime-dir", str(runtime), "-t", "0", env=clean_env())
