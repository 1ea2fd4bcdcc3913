"""What the resident server and the runner each need to live in the background: a detached process with its
output appended to a log, a pid file that names it for good (pid, start time, command line), the log's last
lines when it fails, and a stop that never signals a process pnr did not start.

Standard library and pnr.processes only: the CLI calls this before it knows whether it needs Prefect at all.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pnr import processes

LOG_ROTATE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Spawned:
    """A process started by `spawn_detached`, and where its output begins in the log."""

    process: subprocess.Popen[bytes]
    log_offset: int

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn_detached(
    command: Sequence[str],
    env: Mapping[str, str],
    log_file: Path,
    *,
    cwd: Path | None = None,
    header: Sequence[str] = (),
) -> Spawned:
    """Start `command` detached from this process and its terminal (stdin empty, stdout and stderr appended to
    `log_file` after the `header` lines; the log moves to *.1 past 10 MB first)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    rotate(log_file)
    with open(log_file, "ab") as log:
        offset = log.tell()
        log.write("".join(f"--- pnr: {line}\n" for line in header).encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            close_fds=True,
            **processes.detached_popen_options(),
        )
    return Spawned(process, offset)


# -- pid files and logs ------------------------------------------------------------------------------------------


def read_pid_file(path: Path) -> dict[str, Any] | None:
    """A pid file's record: None when there is none, {} when it cannot be read (stale: nothing is alive)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_pid_file(path: Path, record: Mapping[str, object]) -> None:
    """Replace the pid file at once (readers see the old record or the new one), readable by its owner only."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes((json.dumps(dict(record), indent=1) + "\n").encode())  # "\n" on every OS
    temporary.chmod(0o600)
    os.replace(temporary, path)


def stop_recorded(pid_file: Path, marker: str, timeout: float) -> int | None:
    """Stop the process a pid file records if it is still that process (`marker` in its command line, the
    recorded start time); the pid file goes either way. The pid stopped, or None."""
    record = read_pid_file(pid_file)
    if record is None:
        return None
    stopped = None
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        pid = 0
    started = record.get("created")
    if pid > 0 and processes.runs(pid, marker, float(started) if isinstance(started, float | int) else None):
        processes.terminate(pid, timeout)
        stopped = pid
    with suppress(FileNotFoundError):
        pid_file.unlink()
    return stopped


def rotate(log_file: Path) -> None:
    """Move a log past 10 MB to *.1 (replacing an older one)."""
    with suppress(FileNotFoundError):
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file.with_suffix(log_file.suffix + ".1"))


def tail(path: Path, lines: int, offset: int = 0) -> str:
    """The last `lines` lines of `path` after byte `offset` (reads at most the last 256 KiB)."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - 256 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
