"""Whether a process runs, by pid: for the runtime layer (is the run that wrote a chunk-state file alive?) and
the resident backend (pnr.prefect.daemon). Standard library only."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


def alive(pid: int) -> bool:
    """The process runs (a zombie, or one whose threads are all exiting, does not)."""
    if pid <= 0:  # 0 and -1 would address process groups
        return False
    with suppress(ChildProcessError):  # reap it if it is our child and has exited (a zombie is not alive)
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _threads_running(pid)


def _threads_running(pid: int) -> bool:
    """Whether any thread of `pid` has not finished exiting. A killed multi-threaded process shows its main
    thread as a zombie while the others still exit holding its files (the server's socket, its port)."""
    if not Path("/proc/self/task").is_dir():
        return True  # no procfs: trust kill(0)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        fields = stat_fields(task / "stat")
        if fields and fields[0] not in ("Z", "X"):
            return True
    return False


def stat_fields(stat_file: Path) -> list[str] | None:
    """A /proc stat file (a process's, or one of its threads') from the state field on: the command name before
    it is in parentheses and may contain spaces. None if it cannot be read (the process is gone)."""
    try:
        raw = stat_file.read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()
