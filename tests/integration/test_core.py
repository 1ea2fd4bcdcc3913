"""Core acceptance against the real Docker engine and real Prefect."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TEST_IMAGE, free_port, http_chunk, pnr_cli, write_config

from pnr.exceptions import ChunkFailed, EngineError, ImageError, RunTimeout, StallError
from pnr.prefect.flows import bring_up, tear_down

pytestmark = [pytest.mark.docker, pytest.mark.prefect]


def _domain(name: str, chunks: list[dict[str, Any]], cpux: str = "main") -> dict[str, Any]:
    return {"name": name, "cpuxs": {cpux: {"design_chunks": chunks}}}


def _started_at(client: Any, name: str) -> float:
    from datetime import datetime

    raw = client.api.inspect_container(name)["State"]["StartedAt"]
    head, frac = raw.rstrip("Z").split(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + frac[:6])


def _signals(runtime_dir: Path, domain: str) -> dict[str, Any]:
    from pnr.runtime.store import read_state

    state, _ = read_state(runtime_dir, domain)
    return {k: v.tv for k, v in state.items()}


def test_seed_config_verbatim_runs_to_completion(tmp_path, runtime_dir, docker_client, prefect_harness, cleanup):
    seed = json.loads((ROOT / "config" / "seed_example.json").read_text())
    cleanup.append("seed_example")
    # the only change: a local image that serves port 27017, as mongo would
    port = free_port()
    chunk = seed["cpuxs"]["stack_startup"]["design_chunks"][0]
    chunk["container"]["image"] = TEST_IMAGE
    chunk["container"]["command"] = ["httpd", "-f", "-p", "27017", "-h", "/www"]
    chunk["container"]["ports"] = {"27017": str(port)}
    cfg = write_config(tmp_path / "seed.json", seed)
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert result["cpuxs"]["stack_startup"]["mongodb"]["phase"] == "ready"
    assert _signals(runtime_dir, "seed_example") == {"system_ready": "Y", "mongodb_ready": "Y"}
    assert docker_client.containers.get("pnr_mongodb").status == "running"
    tear_down(str(cfg), runtime_dir=str(runtime_dir))


def test_chain_starts_in_readiness_order(tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup):
    cleanup.append(domain_name)
    p = [free_port() for _ in range(3)]
    pre = domain_name + "-"
    # declared in reverse order on purpose; each listens 1 s after it starts
    chunks = [
        http_chunk("c", p[2], gate={"b_ready": "Y"}, delay=1, prefix=pre, check="http"),
        http_chunk("b", p[1], gate={"a_ready": "Y"}, delay=1, prefix=pre),
        http_chunk("a", p[0], delay=1, prefix=pre),
    ]
    cfg = write_config(tmp_path / "chain.json", _domain(domain_name, chunks))
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    ta, tb, tc = (_started_at(docker_client, pre + n) for n in "abc")
    # a dependent starts only after its producer was ready (>= 1 s after the producer started)
    assert tb - ta >= 1.0, (ta, tb)
    assert tc - tb >= 1.0, (tb, tc)
    assert _signals(runtime_dir, domain_name) == {"system_ready": "Y", "a_ready": "Y", "b_ready": "Y", "c_ready": "Y"}


def test_failed_probe_writes_failure_mapping_stalls_fast_and_leaves_dependents_unstarted(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    never = ["sh", "-c", "exec sleep 600"]  # running, but never listening
    chunks = [
        http_chunk("db", free_port(), deadline=1.5, command=never, prefix=pre),
        http_chunk("api", free_port(), gate={"db_ready": "Y"}, prefix=pre),
        http_chunk("web", free_port(), gate={"api_ready": "Y"}, prefix=pre),
    ]
    cfg = write_config(tmp_path / "stall.json", _domain(domain_name, chunks))
    t0 = time.monotonic()
    with pytest.raises(StallError) as info:
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=120)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert "stalled" in message
    assert "api waits on db_ready is N (needs Y)" in message
    assert "db failed" in message
    assert elapsed < 30, f"stall took {elapsed:.1f}s to detect; the timeout was 120 s"
    assert _signals(runtime_dir, domain_name)["db_ready"] == "N"
    names = {c.name for c in docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})}
    assert names == {pre + "db"}  # dependents never started


def test_container_exiting_before_ready_fails_at_once(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    chunk = http_chunk(
        "dies", free_port(), deadline=60, command=["sh", "-c", "echo boom-marker; exit 3"], prefix=domain_name + "-"
    )
    cfg = write_config(tmp_path / "dies.json", _domain(domain_name, [chunk]))
    t0 = time.monotonic()
    with pytest.raises(ChunkFailed) as info:
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=120)
    assert time.monotonic() - t0 < 20
    assert "exited with code 3" in str(info.value)
    assert "boom-marker" in str(info.value)


def test_missing_image_is_reported_before_anything_starts(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [http_chunk("a", free_port(), prefix=pre), http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=pre)]
    chunks[1]["container"]["image"] = "pnr-test/no-such-image:1"
    cfg = write_config(tmp_path / "img.json", _domain(domain_name, chunks))
    with pytest.raises(ImageError, match="pnr-test/no-such-image:1 is not on this machine and could not be pulled"):
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    label = f"io.pnr.domain={domain_name}"
    assert not docker_client.containers.list(all=True, filters={"label": label})
    assert not docker_client.networks.list(filters={"label": label})


def test_up_twice_reuses_containers_and_down_removes_everything(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [http_chunk("a", free_port(), prefix=pre), http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=pre)]
    cfg = write_config(tmp_path / "twice.json", _domain(domain_name, chunks))
    first = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    ids = {c.name: c.id for c in docker_client.containers.list(filters={"label": f"io.pnr.domain={domain_name}"})}
    second = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    ids2 = {c.name: c.id for c in docker_client.containers.list(filters={"label": f"io.pnr.domain={domain_name}"})}
    assert ids == ids2 and len(ids) == 2
    assert {v["action"] for v in first["cpuxs"]["main"].values()} == {"created"}
    assert {v["action"] for v in second["cpuxs"]["main"].values()} == {"reused"}
    assert docker_client.networks.list(names=[f"pnr_{domain_name}"])
    report = tear_down(str(cfg), runtime_dir=str(runtime_dir))
    assert report["containers"] == [pre + "b", pre + "a"]  # reverse dependency order
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})
    assert not [n for n in docker_client.networks.list() if n.name == f"pnr_{domain_name}"]
    again = tear_down(str(cfg), runtime_dir=str(runtime_dir))  # twice in a row is fine
    assert again["containers"] == []


def test_down_timeout_overrides_a_long_stop_grace_period(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    """`pnr down -t 0` (as `docker compose down -t 0`): a container that ignores SIGTERM and has 600 s of grace
    is killed at once instead of holding `pnr down` for ten minutes (the call's own timeout is 120 s)."""
    cleanup.append(domain_name)
    pre = domain_name + "-"
    stubborn = http_chunk("a", free_port(), prefix=pre, command=["sh", "-c", "trap '' TERM; httpd -f -p 8080 -h /www"])
    stubborn["container"]["stop_grace_period_seconds"] = 600
    cfg = write_config(tmp_path / "grace.json", _domain(domain_name, [stubborn]))
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert docker_client.api.inspect_container(pre + "a")["Config"]["StopTimeout"] == 600
    with pytest.raises(ValueError, match="stop_timeout_seconds: -1 is negative"):  # the tear-down flow's parameter
        tear_down(str(cfg), runtime_dir=str(runtime_dir), stop_timeout_seconds=-1)
    assert docker_client.containers.get(pre + "a").status == "running"  # refused before anything was touched
    down = pnr_cli("down", str(cfg), "--runtime-dir", str(runtime_dir), "-t", "0", timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"removed container {pre}a" in down.stdout
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})


def test_foreign_container_survives_up_and_down(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    foreign = docker_client.containers.run(TEST_IMAGE, ["sleep", "300"], name=f"{domain_name}-foreign", detach=True)
    try:
        cfg = write_config(
            tmp_path / "f.json", _domain(domain_name, [http_chunk("a", free_port(), prefix=domain_name + "-")])
        )
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
        tear_down(str(cfg), runtime_dir=str(runtime_dir))
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_name_taken_by_foreign_container_is_an_error_not_a_removal(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    """Refused before anything starts, like a taken host port: not after the chunks before it came up."""
    cleanup.append(domain_name)
    foreign = docker_client.containers.run(TEST_IMAGE, ["sleep", "300"], name=f"{domain_name}-a", detach=True)
    try:
        pre = domain_name + "-"
        chunks = [
            http_chunk("db", free_port(), prefix=pre),
            http_chunk("a", free_port(), prefix=pre, gate={"db_ready": "Y"}),
        ]
        cfg = write_config(tmp_path / "f.json", _domain(domain_name, chunks))
        with pytest.raises(
            EngineError, match=f"chunk a: container name {pre}a is taken by a container pnr did not create"
        ):
            bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
        foreign.reload()
        assert foreign.status == "running"
        assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})
    finally:
        foreign.remove(force=True)


def test_external_signal_set_unblocks_a_waiting_run(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    chunk = http_chunk("deploy", free_port(), gate={"approval": "Y"}, prefix=domain_name + "-")
    cfg = write_config(tmp_path / "ext.json", _domain(domain_name, [chunk]))
    validate = pnr_cli("validate", str(cfg))
    assert validate.returncode == 0 and "external signal approval" in validate.stdout
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=90)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(3)
    assert thread.is_alive(), outcome
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})
    setter = pnr_cli("signal", "set", str(cfg), "approval", "--tv", "y", "--runtime-dir", str(runtime_dir))
    assert setter.returncode == 0, setter.stderr
    thread.join(60)
    assert not thread.is_alive()
    assert "result" in outcome, outcome
    assert _signals(runtime_dir, domain_name)["deploy_ready"] == "Y"


def test_external_signal_never_set_times_out_with_a_hint(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    chunk = http_chunk("deploy", free_port(), gate={"approval": "Y"}, prefix=domain_name + "-")
    cfg = write_config(tmp_path / "ext.json", _domain(domain_name, [chunk]))
    with pytest.raises(RunTimeout) as info:
        bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=2)
    assert "external signal approval never came" in str(info.value)
    assert "pnr signal set" in str(info.value)


def test_stale_runtime_values_do_not_open_gates(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    # a previous run (and a stray external file) left a_ready = Y behind
    stale = {"a_ready": {"prompt": "", "response": ["yes"], "tv": "Y"}}
    (runtime_dir / f"{domain_name}.pnr.json").write_text(json.dumps(stale))
    (runtime_dir / "leftover.json").write_text(json.dumps(stale))
    chunks = [
        http_chunk("a", free_port(), delay=1.5, prefix=pre),
        http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=pre),
    ]
    cfg = write_config(tmp_path / "stale.json", _domain(domain_name, chunks))
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert _started_at(docker_client, pre + "b") - _started_at(docker_client, pre + "a") >= 1.5


@pytest.mark.slow
def test_fifty_chunks_in_reverse_order_neither_deadlock_nor_serialize(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    n = 50
    # a chain of 10 plus 40 leaves on the chain's head, declared in reverse dependency order; every leaf
    # becomes ready 3 s after it starts, so leaves brought up one at a time would never overlap
    chunks = []
    for i in range(n):
        gate = {"system_ready": "Y"} if i == 0 else {f"k{i - 1 if i < 10 else 0}_ready": "Y"}
        chunks.append(http_chunk(f"k{i}", free_port(), gate=gate, delay=3 if i >= 10 else 0, prefix=pre, deadline=60))
    chunks.reverse()
    cfg = write_config(tmp_path / "fifty.json", _domain(domain_name, chunks))
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=240)
    chunk_results = result["cpuxs"]["main"]
    assert len(chunk_results) == n and all(v["phase"] == "ready" for v in chunk_results.values())
    leaves = [chunk_results[f"k{i}"] for i in range(10, n)]
    spans = [(v["started_at"], v["ready_at"]) for v in leaves]
    most_at_once = max(sum(1 for s, r in spans if s <= t < r) for t, _ in spans)
    assert most_at_once >= 5, f"leaves came up nearly one at a time (max {most_at_once} probing together)"


def test_multiple_cpuxs_run_as_subflows_in_signal_order(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    cleanup.append(domain_name)
    pre = domain_name + "-"
    data = {
        "name": domain_name,
        "cpuxs": {
            "apps": {"design_chunks": [http_chunk("app", free_port(), gate={"db_ready": "Y"}, prefix=pre)]},
            "data": {"design_chunks": [http_chunk("db", free_port(), prefix=pre)]},
        },
    }
    cfg = write_config(tmp_path / "multi.json", data)
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert list(result["cpuxs"]) == ["data", "apps"]
    # the first CPUX begins while Prefect creates its subflow run: its containers are the bring-up's own
    # (a cancelled or crashed bring-up removes them); a later CPUX's carry its subflow run's id
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = {
            r.name: str(r.id)
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[f"{domain_name} · cli", f"{domain_name}.data", f"{domain_name}.apps"])
                )
            )
        }
    label = "io.pnr.flow-run-id"
    assert docker_client.containers.get(pre + "db").labels[label] == runs[f"{domain_name} · cli"], runs
    assert docker_client.containers.get(pre + "app").labels[label] == runs[f"{domain_name}.apps"], runs
    only = bring_up(str(cfg), cpux="data", runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert list(only["cpuxs"]) == ["data"]


def test_task_runs_record_producer_edges_for_the_ui(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup
):
    """Each chunk's task run lists the producers of its gate signals as inputs: the UI draws those edges."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    cleanup.append(domain_name)
    pre = domain_name + "-"
    chunks = [http_chunk("a", free_port(), prefix=pre), http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=pre)]
    cfg = write_config(tmp_path / "edges.json", _domain(domain_name, chunks))
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    with get_client(sync_client=True) as client:
        (cpux_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"{domain_name}.main"]))
        )
        runs = {r.name: r for r in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [cpux_run.id]}))}
    assert {"a", "b", "a.probe[tcp]", "b.probe[tcp]"} <= set(runs) and any(n.startswith("prepare") for n in runs)
    upstream = {
        str(i.id)
        for inputs in runs["b"].task_inputs.values()
        for i in inputs
        if getattr(i, "input_type", "") == "task_run"
    }
    assert str(runs["a"].id) in upstream
    assert all(r.state.is_completed() for r in runs.values())


def test_a_gate_wait_longer_than_a_slice_is_prefect_retries_of_that_chunk(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup, monkeypatch
):
    """A chunk whose gate stays closed past a slice fails that attempt (GateClosed) and Prefect retries it:
    the retry condition finds the chunk by its task run's name; the chunk starts once the gate opens."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    cleanup.append(domain_name)
    monkeypatch.setenv("PNR_GATE_SLICE_SECONDS", "0.3")  # slices 0.3, 0.6, 1.2 s ...: a ~2 s wait retries
    pre = domain_name + "-"
    chunks = [
        http_chunk("a", free_port(), delay=2, prefix=pre),
        http_chunk("b", free_port(), gate={"a_ready": "Y"}, prefix=pre),
    ]
    cfg = write_config(tmp_path / "retries.json", _domain(domain_name, chunks))
    result = bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    assert {r["phase"] for r in result["cpuxs"]["main"].values()} == {"ready"}
    with get_client(sync_client=True) as client:
        (cpux_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"{domain_name}.main"]))
        )
        runs = {r.name: r for r in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [cpux_run.id]}))}
    assert runs["b"].run_count >= 2, runs["b"]  # retried while a came up
    assert runs["a"].run_count == 1
    assert runs["b"].state.is_completed()
    assert _started_at(docker_client, pre + "b") - _started_at(docker_client, pre + "a") >= 2.0


def test_secrets_from_the_host_environment_reach_the_container_only(
    tmp_path, runtime_dir, domain_name, docker_client, prefect_harness, cleanup, monkeypatch
):
    """${VAR} values are passed to the container, and appear nowhere else: not in labels, runtime files or artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    cleanup.append(domain_name)
    secret = "s3cr3t-" + domain_name
    monkeypatch.setenv("PNR_TEST_TOKEN", secret)
    chunk = http_chunk("a", free_port(), prefix=domain_name + "-")
    chunk["container"]["env"] = {"TOKEN": "${PNR_TEST_TOKEN}", "MODE": "${PNR_TEST_UNSET:-dev}"}
    cfg = write_config(tmp_path / "secret.json", _domain(domain_name, [chunk]))
    bring_up(str(cfg), runtime_dir=str(runtime_dir), timeout_seconds=60)
    info = docker_client.api.inspect_container(domain_name + "-a")
    assert f"TOKEN={secret}" in info["Config"]["Env"] and "MODE=dev" in info["Config"]["Env"]
    assert secret not in json.dumps(info["Config"]["Labels"])
    for path in runtime_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=f"pnr-{domain_name}"))
        )
    assert artifacts and all(secret not in json.dumps(a.data, default=str) for a in artifacts)
