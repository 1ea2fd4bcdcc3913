"""The `pnr` command end to end: real processes, real Prefect (ephemeral server), real Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, http_chunk, pnr_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.prefect]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}


def _config(tmp_path: Path, domain: str, *, fail: bool = False) -> Path:
    pre = domain + "-"
    first = http_chunk(
        "db", free_port(), prefix=pre, deadline=1.5 if fail else 20, command=["sleep", "300"] if fail else None
    )
    chunks = [first, http_chunk("api", free_port(), gate={"db_ready": "Y"}, prefix=pre, check="http")]
    return write_config(tmp_path / f"{domain}.json", {"name": domain, "cpuxs": {"main": {"design_chunks": chunks}}})


def _assert_clean(proc: Any) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    assert "Warning" not in text and "WARNING" not in text, text


def test_up_status_down_through_the_cli(tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    cfg = _config(tmp_path, domain_name)
    rdir = str(tmp_path / "rt")
    up = pnr_cli("up", str(cfg), "--runtime-dir", rdir, env=prefect_home)
    assert up.returncode == 0, up.stdout + up.stderr
    _assert_clean(up)
    for phase in ("starting", "probing", "ready"):
        assert phase in up.stdout
    assert "2 chunks completed" in up.stdout

    status = pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir, env=prefect_home)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["domain"] == domain_name
    assert data["signals"]["api_ready"] == {"prompt": "is api ready?", "response": ["yes"], "tv": "Y"}
    assert set(data["signals"]) == {"system_ready", "db_ready", "api_ready"}
    for name in ("db", "api"):
        chunk = data["chunks"][name]
        assert chunk["status"] == "completed"
        assert chunk["container"] == f"{domain_name}-{name}"
        assert docker_client.containers.get(chunk["container_id"]).status == "running"

    get = pnr_cli("signal", "get", str(cfg), "db_ready", "--runtime-dir", rdir)
    assert json.loads(get.stdout)["tv"] == "Y"

    down = pnr_cli("down", str(cfg), "--runtime-dir", rdir, env=prefect_home)
    assert down.returncode == 0, down.stderr
    _assert_clean(down)
    assert f"removed container {domain_name}-api" in down.stdout
    assert not docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain_name}"})
    after = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", rdir).stdout)
    assert {c["status"] for c in after["chunks"].values()} == {"ready"}
    assert "db_ready" not in after["signals"]


def test_a_stalled_up_exits_1_and_explains(tmp_path, domain_name, docker_client, cleanup, prefect_home):
    cleanup.append(domain_name)
    cfg = _config(tmp_path, domain_name, fail=True)
    up = pnr_cli("up", str(cfg), "--runtime-dir", str(tmp_path / "rt"), env=prefect_home)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    assert "execution stalled" in up.stderr
    assert "api waits on db_ready is N (needs Y)" in up.stderr
    status = json.loads(pnr_cli("status", str(cfg), "--json", "--runtime-dir", str(tmp_path / "rt")).stdout)
    assert status["chunks"]["db"]["status"] == "failed"
    assert status["chunks"]["api"]["container"] is None


def test_plan_formats(tmp_path, domain_name):
    cfg = _config(tmp_path, domain_name)
    text = pnr_cli("plan", str(cfg))
    assert text.returncode == 0 and "level 1" in text.stdout and "api" in text.stdout
    js = json.loads(pnr_cli("plan", str(cfg), "--format", "json").stdout)
    assert js["levels"]["main"] == [["db"], ["api"]]
    assert js["signals"]["db_ready"]["producers"] == ["db"]
    mer = pnr_cli("plan", str(cfg), "-f", "mermaid").stdout
    assert mer.startswith("flowchart LR") and "-- db_ready -->" in mer


@pytest.mark.parametrize(
    "args",
    [
        ["up"],  # missing argument
        ["up", "x.json", "--no-such-flag"],  # unknown option
        ["plan", "x.json", "--format", "png"],  # bad choice
    ],
)
def test_usage_errors_exit_2(args):
    proc = pnr_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_signal_set_rejects_a_bad_truth_value(tmp_path, domain_name):
    cfg = _config(tmp_path, domain_name)
    proc = pnr_cli("signal", "set", str(cfg), "approval", "--tv", "maybe", "--runtime-dir", str(tmp_path / "rt"))
    assert proc.returncode == 2
    assert "'maybe' is not a truth value" in proc.stderr
    assert not (tmp_path / "rt" / "external.json").exists()


def test_engine_unreachable_is_a_clear_error(tmp_path, domain_name):
    cfg = _config(tmp_path, domain_name)
    proc = pnr_cli("down", str(cfg), env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert proc.returncode == 1
    assert "cannot reach the Docker engine" in proc.stderr and "DOCKER_HOST=tcp://127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr
