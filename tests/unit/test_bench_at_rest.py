"""The benchmark's at-rest measurement reads the OS's counters of real processes (a busy child and an idle one),
finds a backend's server and runner members from a state dir, and the outside-shaped chain renders as that
harness described it (ports "PORT": "PORT", probe every 0.02 s, no deadline)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.append(str(ROOT / "bench"))

import at_rest  # noqa: E402
import stacks  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")


@pytest.fixture
def children() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    procs = {
        "busy": subprocess.Popen([sys.executable, "-c", spin]),
        "idle": subprocess.Popen(
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE
        ),
    }
    try:
        procs["idle"].stdout.readline()  # started: from here on it only sleeps
        yield procs
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)


def test_cpu_and_memory_come_from_the_processes_own_counters(children: dict[str, Any]) -> None:
    result = at_rest.measure({name: p.pid for name, p in children.items()}, seconds=1.0, threads=True)
    busy, idle = result["processes"]["busy"], result["processes"]["idle"]
    assert busy["cpu_ticks"] > idle["cpu_ticks"]
    assert busy["threads"] and not idle["threads"]
    for row in (busy, idle):
        assert row["rss_mb"] >= row["pss_mb"] >= row["uss_mb"] > 0
    assert result["total"]["cpu_ticks"] == busy["cpu_ticks"] + idle["cpu_ticks"]
    assert "| **total** |" in at_rest.table(result)


def test_a_process_that_ends_in_the_window_counts_its_cpu_and_no_memory(children: dict[str, Any]) -> None:
    """A runner worker that ends while the backend idles: memory is what is left at the end of the window."""
    import threading

    short = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    threading.Thread(target=short.wait, daemon=True).start()  # reaped as the runner's leader reaps its workers
    threading.Timer(0.5, short.stdin.close).start()  # type: ignore[union-attr]  # it ends in the window
    try:
        result = at_rest.measure({"short": short.pid, "idle": children["idle"].pid}, seconds=3.0, step=0.1)
    finally:
        short.kill()
    ended, idle = result["processes"]["short"], result["processes"]["idle"]
    assert ended["ended"] and ended["rss_mb"] == 0 and "ended" not in idle
    assert result["total"]["rss_mb"] == idle["rss_mb"] > 0
    assert result["start"]["total"]["rss_mb"] > idle["rss_mb"]  # at the start both were there
    assert "| short (ended) |" in at_rest.table(result)


def test_a_backend_is_its_server_and_each_runner_member(tmp_path: Path, children: dict[str, Any]) -> None:
    (tmp_path / "server.pid").write_text(json.dumps({"pid": children["idle"].pid}))
    (tmp_path / "runner.pid").write_text(json.dumps({"pid": children["busy"].pid}))
    assert at_rest.backend_processes(tmp_path) == {"server": children["idle"].pid, "runner-0": children["busy"].pid}
    assert at_rest.backend_processes(tmp_path / "none") == {}


def test_the_outside_chain_renders_as_described() -> None:
    stack = stacks.outside(6)
    config = stacks.pnr_config(stack, "d", "p-", "tag", interval=0.005)
    chunks = config["cpuxs"]["bench"]["design_chunks"]
    assert [c["name"] for c in chunks] == [f"s{i}" for i in range(6)]
    for chunk, service in zip(chunks, stack.services, strict=True):
        port = str(service.host_port)
        assert chunk["container"]["ports"] == {port: port}
        assert chunk["container"]["command"] == ["sh", "-c", f"sleep 1; exec httpd -f -p {port} -h /www"]
        check = chunk["health_check"]
        assert check["interval_seconds"] == 0.02 and check["timeout_seconds"] == 1
        assert "deadline_seconds" not in check
        assert set(check["status_mapping"]) == {"success", "failure"}
    assert chunks[1]["gatekeeper"] == {"s0_ready": {"prompt": "is s0 ready?", "response": ["yes"], "tv": "Y"}}
    compose = stacks.compose_file(stack, "p-", "tag", "1ms")
    s0 = stack.services[0]
    assert compose["services"]["s0"]["ports"] == [f"{s0.host_port}:{s0.port}"]
