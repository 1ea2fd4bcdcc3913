"""Idempotent convergence through `pnr up` against the real engine: reuse what is unchanged, recreate only the
changed chunk and say which field changed before acting, `--dry-run` touches nothing, `--force-recreate`."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, http_chunk, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}


def _ids(client: Any, domain: str) -> dict[str, str]:
    return {
        c.labels["io.pnr.chunk"]: c.id
        for c in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"})
    }


def _line_index(stdout: str, pattern: str) -> int:
    for i, line in enumerate(stdout.splitlines()):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no line matching {pattern!r} in:\n{stdout}")


def _runtime_snapshot(rdir: Path) -> dict[str, tuple[float, bytes]]:
    return {str(p): (p.stat().st_mtime, p.read_bytes()) for p in rdir.rglob("*") if p.is_file() and p.name != "lock"}


def test_up_reuses_recreates_only_what_changed_and_says_why(
    tmp_path, domain_name, docker_client, cleanup, prefect_home
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    p1, p2 = free_port(), free_port()
    db = http_chunk("db", p1, prefix=pre, delay=1)
    db["container"]["env"] = {"MODE": "one"}
    api = http_chunk("api", free_port(), prefix=pre, gate={"db_ready": "Y"})
    api["container"]["env"] = {"DB_URL": "secret-value-one"}
    data = {"name": domain_name, "cpuxs": {"main": {"design_chunks": [db, api]}}}
    cfg = write_config(tmp_path / "c.json", data)
    rdir = tmp_path / "rt"
    run = ["--runtime-dir", str(rdir)]

    first = pnr_cli("up", str(cfg), *run, env=prefect_home)
    assert first.returncode == 0, first.stdout + first.stderr
    ids0 = _ids(docker_client, domain_name)
    assert set(ids0) == {"db", "api"}

    # 1. unchanged: both reused, nothing recreated
    again = pnr_cli("up", str(cfg), *run, env=prefect_home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _ids(docker_client, domain_name) == ids0
    assert re.search(r"\bdb\s+probing\s+\S+ reused", again.stdout) and re.search(
        r"\bapi\s+probing\s+\S+ reused", again.stdout
    ), again.stdout
    assert not re.search(r"starting\s+recreating ", again.stdout), again.stdout

    # 2. db's host port changed: --dry-run shows it and touches nothing
    changed = copy.deepcopy(data)
    changed["cpuxs"]["main"]["design_chunks"][0]["container"]["ports"] = {"8080": str(p2)}
    write_config(cfg, changed)
    before = _runtime_snapshot(rdir)
    dry = pnr_cli("up", str(cfg), *run, "--dry-run", env=prefect_home)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    reason = f"ports.8080 changed 127.0.0.1:{p1} -> 127.0.0.1:{p2}"
    assert reason in dry.stdout and re.search(r"\bdb\b.*\brecreate\b", dry.stdout), dry.stdout
    assert re.search(r"\bapi\b.*\breuse\b", dry.stdout), dry.stdout
    assert _ids(docker_client, domain_name) == ids0
    assert _runtime_snapshot(rdir) == before

    # 3. up recreates only db, printing the field-level reason before acting; api is re-gated on the new db
    up = pnr_cli("up", str(cfg), *run, env=prefect_home)
    assert up.returncode == 0, up.stdout + up.stderr
    ids1 = _ids(docker_client, domain_name)
    assert ids1["db"] != ids0["db"] and ids1["api"] == ids0["api"]
    said = _line_index(up.stdout, rf"\bdb\s+starting\s+recreating {pre}db: {re.escape(reason)}")
    assert said < _line_index(up.stdout, r"\bdb\s+probing\b")
    assert said < _line_index(up.stdout, r"\bapi\s+probing\b")
    # re-gated: api passed its gate only once the new db's probe had succeeded (db's mapping wakes api at once,
    # so api's "probing" line may print before db's "ready" line; the recorded times are the causal order)
    recorded = json.loads((rdir / ".pnr" / f"{domain_name}.chunks.json").read_text())["chunks"]
    assert recorded["api"]["started_at"] >= recorded["db"]["ready_at"], recorded
    ports = docker_client.api.inspect_container(ids1["db"])["HostConfig"]["PortBindings"]
    assert ports == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p2)}]}

    # 4. api's env changed: only api, "env.DB_URL changed", and the secret value is never printed
    changed["cpuxs"]["main"]["design_chunks"][1]["container"]["env"] = {"DB_URL": "secret-value-two"}
    write_config(cfg, changed)
    dry = pnr_cli("up", str(cfg), *run, "--dry-run", env=prefect_home)
    assert "env.DB_URL changed" in dry.stdout and re.search(r"\bdb\b.*\breuse\b", dry.stdout), dry.stdout
    assert _ids(docker_client, domain_name) == ids1
    up = pnr_cli("up", str(cfg), *run, env=prefect_home)
    assert up.returncode == 0, up.stdout + up.stderr
    assert re.search(r"\bapi\s+starting\s+recreating \S+: env\.DB_URL changed", up.stdout), up.stdout
    assert "secret-value" not in up.stdout + up.stderr + dry.stdout
    ids2 = _ids(docker_client, domain_name)
    assert ids2["db"] == ids1["db"] and ids2["api"] != ids1["api"]

    # 5. --force-recreate: all of them, and --dry-run says so first
    dry = pnr_cli("up", str(cfg), *run, "--dry-run", "--force-recreate", env=prefect_home)
    assert dry.stdout.count("--force-recreate") >= 2 and _ids(docker_client, domain_name) == ids2, dry.stdout
    forced = pnr_cli("up", str(cfg), *run, "--force-recreate", env=prefect_home)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    ids3 = _ids(docker_client, domain_name)
    assert set(ids3) == {"db", "api"} and not set(ids3.values()) & set(ids2.values())
    assert all(docker_client.containers.get(i).status == "running" for i in ids3.values())
