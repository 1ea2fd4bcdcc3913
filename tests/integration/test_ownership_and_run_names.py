"""A domain remembers the config file that brought it up (real engine, real Prefect): `pnr down` / `pnr up`
of the same domain name from another file refuse, and say which file, unless forced; flow runs are named and
tagged after their domain, as the Prefect API returns them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_IMAGE, free_port, http_chunk, pnr_cli, write_config

from pnr.exceptions import ConfigError
from pnr.prefect.flows import bring_up, tear_down

pytestmark = [pytest.mark.docker, pytest.mark.prefect]


def _config(folder: Path, domain: str, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    chunk = http_chunk("web", port, prefix=domain + "-")
    return write_config(folder / "domain.json", {"name": domain, "cpuxs": {"main": {"design_chunks": [chunk]}}})


def _containers(docker_client: Any, domain: str) -> dict[str, Any]:
    found = docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"})
    return {c.name: c for c in found}


def test_a_domain_brought_up_from_one_file_is_not_removed_or_taken_over_from_another(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    port = free_port()
    first = _config(tmp_path / "a", domain_name, port)
    other = _config(tmp_path / "b", domain_name, port)  # the same domain name, another file
    bring_up(str(first), runtime_dir=str(runtime_dir), timeout_seconds=60)
    before = _containers(docker_client, domain_name)
    assert [c.labels["io.pnr.config"] for c in before.values()] == [str(first.resolve())]

    refused = pnr_cli("down", str(other), "--runtime-dir", str(runtime_dir))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())  # rich wraps long lines
    assert f"{other}: name: domain '{domain_name}' was brought up from another config file: {first.resolve()}" in (
        message
    )
    assert f"pnr down {first.resolve()}" in message and "pnr down --force" in message
    assert _containers(docker_client, domain_name).keys() == before.keys()

    dry = pnr_cli("up", str(other), "--dry-run", "--runtime-dir", str(runtime_dir))
    assert dry.returncode == 1 and "refuse" in dry.stdout and str(first.resolve()) in dry.stdout, dry.stdout
    with pytest.raises(ConfigError, match="pnr up --force-recreate"):
        bring_up(str(other), runtime_dir=str(runtime_dir), timeout_seconds=60)
    after = _containers(docker_client, domain_name)
    assert {n: c.id for n, c in after.items()} == {n: c.id for n, c in before.items()}  # nothing touched

    with pytest.raises(ConfigError, match="force=true"):  # the tear-down flow, as a deployment runs it
        tear_down(str(other), runtime_dir=str(runtime_dir))
    forced = pnr_cli("down", "--force", str(other), "--runtime-dir", str(runtime_dir))
    assert forced.returncode == 0, forced.stderr
    assert _containers(docker_client, domain_name) == {}

    bring_up(str(other), runtime_dir=str(runtime_dir), timeout_seconds=60)  # the domain is free: the other file's now
    (made,) = _containers(docker_client, domain_name).values()
    assert made.labels["io.pnr.config"] == str(other.resolve())
    report = tear_down(str(first), runtime_dir=str(runtime_dir), force=True)
    assert report["containers"] == [made.name]
    assert _containers(docker_client, domain_name) == {}


def test_containers_made_before_the_config_label_are_removed_without_complaint(
    tmp_path, runtime_dir, domain_name, docker_client, cleanup
):
    cleanup.append(domain_name)
    labels = {"io.pnr.managed": "true", "io.pnr.domain": domain_name, "io.pnr.chunk": "web"}  # no io.pnr.config
    docker_client.containers.create(TEST_IMAGE, ["sleep", "60"], name=f"{domain_name}-web", labels=labels)
    config = _config(tmp_path, domain_name, free_port())
    done = pnr_cli("down", str(config), "--runtime-dir", str(runtime_dir))
    assert done.returncode == 0, done.stderr
    assert _containers(docker_client, domain_name) == {}


def test_bring_up_and_tear_down_runs_are_named_and_tagged_after_their_domain(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    cleanup.append(domain_name)
    config = _config(tmp_path, domain_name, free_port())
    bring_up(str(config), runtime_dir=str(runtime_dir), timeout_seconds=60)
    tear_down(str(config), runtime_dir=str(runtime_dir))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"domain:{domain_name}"]))
        )
        flows = {r.id: client.read_flow(r.flow_id).name for r in runs}
    named = sorted((flows[r.id], r.name, sorted(r.tags)) for r in runs)
    tags = sorted(["cli", f"domain:{domain_name}", "pnr"])
    assert named == [
        ("pnr-down", f"{domain_name} · cli", tags),
        ("pnr-up", f"{domain_name} · cli", tags),
    ], json.dumps(named)


def test_up_of_a_file_with_seven_problems_names_them_all_and_starts_nothing(tmp_path, domain_name, docker_client):
    from unit.test_footguns import SEED, _seven_problems

    doc = _seven_problems(json.loads(json.dumps(SEED)))
    doc["name"] = domain_name
    config = write_config(tmp_path / "seven.json", doc)
    refused = pnr_cli("up", str(config), "--runtime-dir", str(tmp_path / "runtime"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.startswith(f"{config}: cpuxs.")]) == 7
    assert _containers(docker_client, domain_name) == {}
    assert docker_client.networks.list(filters={"label": f"io.pnr.domain={domain_name}"}) == []
