"""The runtime folder's files and how they are written: names, the folder lock, atomic JSON writes.

runtime/
  <domain>.pnr.json           pnr's own truth values of the domain (pnr.runtime.store)
  external.json               values set from outside (`pnr signal set`)
  *.json                      anyone else's values (a script, a container with the folder mounted)
  .pnr/lock                   the folder lock every pnr writer holds
  .pnr/<domain>.chunks.json   chunk states of the last run, for `pnr status` (pnr.runtime.chunk_state)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

EXTERNAL_FILE = "external.json"
MAX_SIGNAL_FILE_BYTES = 1024 * 1024  # a runtime file larger than this is reported, not read
META_DIR = ".pnr"


OWN_SUFFIX = ".pnr.json"


def own_file_name(domain: str) -> str:
    return f"{domain}{OWN_SUFFIX}"


@contextlib.contextmanager
def folder_lock(runtime_dir: Path) -> Iterator[None]:
    lock_dir = runtime_dir / META_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def chunk_state_path(runtime_dir: Path, domain: str) -> Path:
    return runtime_dir / META_DIR / f"{domain}.chunks.json"


def atomic_write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of one (see atomic_write_text)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", durable)


def signal_file_text(values: Mapping[str, Any]) -> str:
    """A signal file as people read it, one signal per line (`{"prompt": ..., "response": [...], "tv": "Y"}`),
    each line by the C encoder: a domain of 500 signals rewrites its file in a fraction of a millisecond."""
    return signal_file_from_lines([signal_file_line(name, value) for name, value in sorted(values.items())])


def signal_file_line(name: str, value: Any) -> str:
    """One line of a signal file: the name and its value (a PnR as a dict)."""
    return f"  {json.dumps(name)}: {json.dumps(value, sort_keys=True)}"


def signal_file_from_lines(lines: list[str]) -> str:
    """A signal file from its lines (`signal_file_line`), in name order."""
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write `text` so a reader sees the old file or the new one, never half of one. `durable`: on disk before
    the rename (signal files); a status file that is rewritten every fraction of a second can skip the fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())  # a crash right after the rename must not leave an empty file
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
