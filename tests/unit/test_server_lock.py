"""The one file lock (pnr.runtime.files.file_lock) that the runtime folder, the server and the runner use:
exclusive between processes and between the threads of one process, with an optional timeout."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pnr.locks import file_lock
from pnr.runtime.files import folder_lock

HOLDER = "import sys; from pathlib import Path; from pnr.locks import file_lock\n" + (
    "with file_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    sys.stdin.readline()\n"
)


def test_threads_take_turns(tmp_path: Path) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def work(n: int) -> None:
        for _ in range(20):
            with file_lock(tmp_path / "lock"):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not overlaps


def test_another_process_holding_it_makes_a_timeout_expire(tmp_path: Path) -> None:
    path = tmp_path / "server.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(TimeoutError), file_lock(path, timeout=0.2):
            pass
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
        with file_lock(path, timeout=30):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_the_folder_lock_lives_in_the_runtime_folder(tmp_path: Path) -> None:
    with folder_lock(tmp_path / "rt"):
        assert (tmp_path / "rt" / ".pnr" / "lock").exists()
        with pytest.raises(TimeoutError), file_lock(tmp_path / "rt" / ".pnr" / "lock", timeout=0.1):
            pass
