"""Processes by pid, the same on Linux, macOS and Windows (psutil): whether one runs, which program it is, how to
start one detached and how to stop it. For the runtime layer (is the run that wrote a chunk-state file alive?),
the flows (Prefect's throw-away server) and the resident backend (pnr.backend).

A pid alone is not a process: with its start time and command line (`runs`), a pid that the system has given
to another program since is never taken for (and never gets signalled as) the one pnr started.

psutil is imported when first needed: `pnr` commands that never look at a process do not pay for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import psutil

POLL_SECONDS = 0.1


def alive(pid: int) -> bool:
    """The process runs: a zombie does not, unless some of its threads are still exiting (a killed threaded
    process can show its main thread as a zombie while the others still hold its files, its port)."""
    import psutil

    if pid <= 0:  # 0 and -1 would address process groups
        return False
    try:
        process = psutil.Process(pid)
        state = process.status()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    if state == psutil.STATUS_DEAD:
        return False
    if state != psutil.STATUS_ZOMBIE:
        return True
    if _threads_exiting(process):
        return True
    with suppress(psutil.Error, ChildProcessError):  # reap it if it is our child
        process.wait(timeout=0)
    return False


def _threads_exiting(process: psutil.Process) -> bool:
    """Whether a zombie's other threads are still on their way out (Linux shows them; elsewhere: no)."""
    import psutil

    if not sys.platform.startswith("linux"):
        return False
    try:
        threads = process.threads()
    except psutil.Error:
        return False
    for thread in threads:
        if thread.id == process.pid:
            continue
        with suppress(psutil.Error):  # on Linux a thread id answers as a process of its own
            if psutil.Process(thread.id).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return True
    return False


def created(pid: int) -> float | None:
    """When the process started (seconds since the epoch), None if it is gone or hidden."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def cmdline(pid: int) -> list[str]:
    """The command line of a live process ([] if it is gone or unreadable)."""
    import psutil

    try:
        return _cmdline(psutil.Process(pid))
    except psutil.Error:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return [str(part) for part in process.cmdline()]
    except Exception:  # psutil.Error, or a zombie's unreadable command line (OSError on some systems)
        return []


# How far two readings of one process's start may differ. psutil reads it on Linux as the start in clock ticks
# since boot plus the boot time of /proc/stat, a whole number of seconds that the kernel derives from the wall
# clock: as time synchronisation adjusts the clock, it moves by a second now and then, and so does every
# process's start read after it. A pid taken over by another process has a start far later (the pid space wraps
# first), well outside this tolerance.
START_TOLERANCE = 2.0


def started_at(pid: int, created_at: float | None) -> bool:
    """The process `pid` is the one that started at `created_at` (True when either is unknown)."""
    now = created(pid) if created_at is not None else None
    return now is None or created_at is None or abs(now - created_at) < START_TOLERANCE


def runs(pid: int, marker: str, created_at: float | None = None) -> bool:
    """`pid` is alive, runs a command line that contains `marker` (e.g. "pnr.backend.runner_process") and, when
    `created_at` is given, is the process that started then."""
    return alive(pid) and started_at(pid, created_at) and any(marker in part for part in cmdline(pid))


def children(pid: int) -> list[int]:
    """The pids of a process's children (and theirs)."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def listener_of(port: int) -> str | None:
    """`pid N (command)` of a process listening on TCP `port`; best effort (other users' processes, and on
    macOS every process but one's own, may be hidden)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return f"pid {conn.pid} ({' '.join(cmdline(conn.pid))[:100]})"
    return None


# -- starting and stopping: the platform differences ------------------------------------------------------------


class DetachedOptions(TypedDict, total=False):
    """The `subprocess.Popen` keywords of a detached process (one of them, by platform)."""

    creationflags: int
    start_new_session: bool


def detached_popen_options() -> DetachedOptions:
    """`subprocess.Popen` options for a process that outlives its starter and is spared the terminal's Ctrl-C:
    a session of its own on POSIX (it leads a process group: `terminate` stops the group), a new process group
    without a console on Windows."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}
    return {"start_new_session": True}


def terminate(pid: int, timeout: float) -> bool:
    """Stop a process and what it started: SIGTERM to its process group where it leads one (POSIX), else to it
    and its children; SIGKILL (Windows: TerminateProcess) after `timeout` seconds. False only if it survived
    the kill too. Call it only for a process known to be pnr's (see `runs`, `Identity.still_runs`)."""
    import psutil

    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    for kill, grace in ((False, timeout), (True, 5.0)):
        _signal(process, kill)
        until = time.monotonic() + grace
        while time.monotonic() < until:
            if not alive(pid):
                return True
            time.sleep(POLL_SECONDS)
    return False


def _signal(process: psutil.Process, kill: bool) -> None:
    import psutil

    if sys.platform != "win32":
        with suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
                return
    try:
        family = [*process.children(recursive=True), process]
    except psutil.Error:
        family = [process]
    for member in family:
        with suppress(psutil.Error):
            member.kill() if kill else member.terminate()


def die_with_parent(exit_code: int = 1) -> Callable[[], None] | None:
    """A function to call in a forked child (Linux; None elsewhere): the child gets SIGTERM when the process that
    forked it dies, even by SIGKILL, and exits at once if that happened before. Resolved here, in the parent, so
    the child runs only a syscall (safe as a `preexec_fn`)."""
    import ctypes

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
