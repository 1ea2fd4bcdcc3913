"""Detached helper processes of pnr's resident backend (the Prefect server, the runner): start one in a
session of its own that outlives the shell, recognise it again by pid *and* command line and start time (a
reused pid never gets another program killed), stop it by its process group.

Standard library only: the CLI calls this before it knows whether it needs Prefect at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pnr.processes import alive as alive  # re-exported: the backend checks its processes through this module
from pnr.processes import stat_fields

POLL_SECONDS = 0.1


def spawn_detached(command: Sequence[str], env: Mapping[str, str], log_file: Path, cwd: Path | None = None) -> int:
    """Start `command` in its own session (stdin /dev/null, output appended to `log_file`); its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C and the shell's exit spare it
            close_fds=True,
        )
    return process.pid


def runs(pid: int, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker` (e.g. "pnr.backend.runner")."""
    return alive(pid) and any(marker in part for part in cmdline(pid))


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM the process group of `pid` (it leads its own session), SIGKILL after `timeout` seconds. False
    only if the process survived SIGKILL too."""
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return True
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return True
        until = time.monotonic() + grace
        while time.monotonic() < until:
            if not alive(pid):
                return True
            time.sleep(POLL_SECONDS)
    return False


def cmdline(pid: int) -> list[str]:
    """The command line of a live process ([] if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def proc_start(pid: int) -> int | None:
    """The process's start time (clock ticks after boot): with the pid, it names one process for good."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    return int(fields[19]) if fields and len(fields) > 19 else None  # field 22 of stat(5)
