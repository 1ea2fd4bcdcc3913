"""Detached helper processes of pnr's resident backend (the Prefect server, the runner): start one in a
session of its own that outlives the shell, recognise it again by pid *and* command line (a reused pid never
gets another program killed), stop it by its process group.

Standard library only: the CLI calls this before it knows whether it needs Prefect at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn_detached(command: Sequence[str], env: Mapping[str, str], log_file: Path, cwd: Path | None = None) -> int:
    """Start `command` in its own session (stdin /dev/null, output appended to `log_file`); its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(
            list(command),
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C and the shell's exit spare it
            close_fds=True,
        )
    return process.pid


def cmdline(pid: int) -> list[str]:
    """The command line of a live process ([] if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def runs(pid: int, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker` (e.g. "pnr.prefect.runner")."""
    return alive(pid) and any(marker in part for part in cmdline(pid))


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group of `pid` (its session leader), SIGKILL after `timeout` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not alive(pid):
                return
            time.sleep(0.05)
