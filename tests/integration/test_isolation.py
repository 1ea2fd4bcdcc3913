"""Two domains brought up at the same time (two `pnr up` processes) do not interfere: separate containers,
networks and runtime values, even in one shared runtime folder; a host port clash between them is reported
by the pre-check before the second one starts anything."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import _TEST_ONLY_ENV, PNR, ROOT, free_port, http_chunk, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}


def _started_at(client: Any, name: str) -> float:
    raw = client.api.inspect_container(name)["State"]["StartedAt"]
    head, frac = raw.rstrip("Z").split(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + frac[:6])


def _owned(client: Any, domain: str) -> dict[str, Any]:
    return {c.name: c for c in client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"})}


def _domain(
    tmp_path: Path, name: str, db_delay: float, db_port: int | None = None, extra_gate: str | None = None
) -> Path:
    pre = name + "-"
    chunks = [
        http_chunk("db", db_port or free_port(), prefix=pre, delay=db_delay),
        http_chunk("api", free_port(), prefix=pre, gate={"db_ready": "Y"}),
    ]
    if extra_gate:
        chunks.append(http_chunk("web", free_port(), prefix=pre, gate={"api_ready": "Y", extra_gate: "Y"}))
    return write_config(tmp_path / f"{name}.json", {"name": name, "cpuxs": {"main": {"design_chunks": chunks}}})


def test_two_domains_at_once_in_one_runtime_folder(tmp_path, docker_client, cleanup, prefect_home):
    a, b = f"ia{os.urandom(4).hex()}", f"ib{os.urandom(4).hex()}"
    cleanup.extend([a, b])
    # same chunk and signal names in both; b's db is slow: a's db_ready=Y must not open b's gate
    cfg_a, cfg_b = _domain(tmp_path, a, 0), _domain(tmp_path, b, 3.0)
    rdir = str(tmp_path / "shared-rt")
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(pnr_cli, "up", str(cfg), "--runtime-dir", rdir, env=prefect_home) for cfg in (cfg_a, cfg_b)]
        up_a, up_b = (r.result() for r in runs)
    for up in (up_a, up_b):
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Traceback" not in up.stdout + up.stderr

    for dom in (a, b):
        mine = _owned(docker_client, dom)
        assert sorted(mine) == [f"{dom}-api", f"{dom}-db"]
        net = docker_client.networks.get(f"pnr_{dom}")
        assert net.attrs["Labels"]["io.pnr.domain"] == dom
        net.reload()
        assert sorted(c.name for c in net.containers) == sorted(mine)
        for c in mine.values():
            assert list(c.attrs["NetworkSettings"]["Networks"]) == [f"pnr_{dom}"]
    assert _started_at(docker_client, f"{b}-api") >= _started_at(docker_client, f"{b}-db") + 3.0 - 0.25

    # each sees only its own <domain>.pnr.json
    rt = Path(rdir)
    assert (rt / f"{a}.pnr.json").is_file() and (rt / f"{b}.pnr.json").is_file()
    own_a = json.loads((rt / f"{a}.pnr.json").read_text())
    own_a["leak_probe"] = {"prompt": "only a", "response": ["yes"], "tv": "Y"}
    (rt / f"{a}.pnr.json").write_text(json.dumps(own_a))
    get = {
        d: json.loads(pnr_cli("signal", "get", str(c), "leak_probe", "--runtime-dir", rdir).stdout)["tv"]
        for d, c in ((a, cfg_a), (b, cfg_b))
    }
    assert get == {a: "Y", b: "U"}

    # tearing one down leaves the other whole
    ids_b = {n: c.id for n, c in _owned(docker_client, b).items()}
    down = pnr_cli("down", str(cfg_a), "--runtime-dir", rdir)
    assert down.returncode == 0, down.stderr
    assert not _owned(docker_client, a) and not docker_client.networks.list(names=[f"pnr_{a}"])
    assert {n: c.id for n, c in _owned(docker_client, b).items()} == ids_b
    assert all(c.status == "running" for c in _owned(docker_client, b).values())
    status_b = json.loads(pnr_cli("status", str(cfg_b), "--json", "--runtime-dir", rdir).stdout)
    assert {c["status"] for c in status_b["chunks"].values()} == {"completed"}
    assert status_b["signals"]["db_ready"]["tv"] == "Y"
    assert pnr_cli("down", str(cfg_b), "--runtime-dir", rdir).returncode == 0


def test_port_clash_between_two_running_domains_is_caught_before_anything_starts(
    tmp_path, docker_client, cleanup, prefect_home
):
    a, b = f"ia{os.urandom(4).hex()}", f"ib{os.urandom(4).hex()}"
    cleanup.extend([a, b])
    port = free_port()
    cfg_a = _domain(tmp_path, a, 0, db_port=port, extra_gate="go_a")  # a keeps running: web waits on go_a
    cfg_b = _domain(tmp_path, b, 0, db_port=port)
    rdir_a, rdir_b = str(tmp_path / "rt-a"), str(tmp_path / "rt-b")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TEST_ONLY_ENV)}
    log = open(tmp_path / "a.log", "w")  # noqa: SIM115 - closed in finally
    proc_a = subprocess.Popen(
        [*PNR, "up", str(cfg_a), "--runtime-dir", rdir_a, "--timeout", "180"],
        cwd=ROOT,
        env={**env, **prefect_home},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from pnr.runtime.store import read_state

        end = time.monotonic() + 150
        while read_state(rdir_a, a)[0].get("api_ready") is None or read_state(rdir_a, a)[0]["api_ready"].tv != "Y":
            assert proc_a.poll() is None and time.monotonic() < end, (tmp_path / "a.log").read_text()
            time.sleep(0.2)
        ids_a = {n: c.id for n, c in _owned(docker_client, a).items()}

        up_b = pnr_cli("up", str(cfg_b), "--runtime-dir", rdir_b, env=prefect_home)
        assert up_b.returncode == 1, up_b.stdout + up_b.stderr
        assert "Traceback" not in up_b.stdout + up_b.stderr
        assert f"chunk db: host port 127.0.0.1:{port}/tcp" in up_b.stderr and "already in use" in up_b.stderr, (
            up_b.stderr
        )
        assert not _owned(docker_client, b) and not docker_client.networks.list(names=[f"pnr_{b}"])

        # a did not notice: it still runs, then completes when its external signal comes
        assert pnr_cli("signal", "set", str(cfg_a), "go_a", "--tv", "Y", "--runtime-dir", rdir_a).returncode == 0
        assert proc_a.wait(120) == 0, (tmp_path / "a.log").read_text()
        now = _owned(docker_client, a)
        assert {n: now[n].id for n in ids_a} == ids_a and len(now) == 3
    finally:
        if proc_a.poll() is None:
            proc_a.kill()
            proc_a.wait(10)
        log.close()
    for cfg, rdir in ((cfg_a, rdir_a), (cfg_b, rdir_b)):
        assert pnr_cli("down", str(cfg), "--runtime-dir", rdir).returncode == 0
