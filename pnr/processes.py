"""Whether a process runs, by pid: for the runtime layer (is the run that wrote a chunk-state file alive?) and
the resident backend (pnr.backend.daemon). Standard library only."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
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


def die_with_parent(exit_code: int = 1) -> Callable[[], None] | None:
    """A function to call in a forked child (Linux; None elsewhere): the child gets SIGTERM when the process that
    forked it dies, even by SIGKILL, and exits at once if that happened before. Resolved here, in the parent, so
    the child runs only a syscall (safe as a `preexec_fn`)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent already died between fork and prctl
            os._exit(exit_code)

    return in_child
