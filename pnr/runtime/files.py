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
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from pnr.locks import file_lock
from pnr.records import JsonValue

V = TypeVar("V")

EXTERNAL_FILE = "external.json"
MAX_SIGNAL_FILE_BYTES = 1024 * 1024  # a runtime file larger than this is reported, not read
META_DIR = ".pnr"


OWN_SUFFIX = ".pnr.json"


def own_file_name(domain: str) -> str:
    return f"{domain}{OWN_SUFFIX}"


@contextlib.contextmanager
def folder_lock(runtime_dir: Path) -> Iterator[None]:
    """The runtime folder's lock, held by every pnr writer of the folder."""
    lock_dir = runtime_dir / META_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_dir / "lock"):
        yield


def chunk_state_path(runtime_dir: Path, domain: str) -> Path:
    return runtime_dir / META_DIR / f"{domain}.chunks.json"


def atomic_write_json(path: Path, data: JsonValue, durable: bool = True) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of one (see atomic_write_text)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", durable)


def signal_file_text(values: Mapping[str, Mapping[str, object]]) -> str:
    """A signal file as people read it, one signal per line (`{"prompt": ..., "response": [...], "tv": "Y"}`),
    each line by the C encoder: a domain of 500 signals rewrites its file in a fraction of a millisecond."""
    return signal_file_from_lines([signal_file_line(name, value) for name, value in sorted(values.items())])


def signal_file_line(name: str, value: Mapping[str, object]) -> str:
    """One line of a signal file: the name and its value (a PnR as a dict)."""
    return f"  {json.dumps(name)}: {json.dumps(value, sort_keys=True)}"


def signal_file_from_lines(lines: list[str]) -> str:
    """A signal file from its lines (`signal_file_line`), in name order."""
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


FileStamp = tuple[int, int, int]  # (mtime_ns, size, inode): whether a file is still the one a writer left


def stamp_of(st: os.stat_result) -> FileStamp:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def file_stamp(path: Path) -> FileStamp | None:
    try:
        return stamp_of(path.stat())
    except OSError:
        return None


def atomic_write_text(path: Path, text: str, durable: bool = True) -> FileStamp:
    """Write `text` so a reader sees the old file or the new one, never half of one. `durable`: on disk before
    the rename (signal files); a status file that is rewritten every fraction of a second can skip the fsync.
    Returns the written file's stamp, taken before the rename: a stat of `path` afterwards could already see
    another writer's file and take it for this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())  # a crash right after the rename must not leave an empty file
            if sys.platform != "win32":  # Windows has no mode bits to set
                os.fchmod(fh.fileno(), 0o644)
            st = os.fstat(fh.fileno())
        os.replace(tmp, path)
        return stamp_of(st)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RenderedLines(Generic[V]):
    """One rendered line per name, rendered again only when its value changed (`same` old new is false): a file
    of N values that a run rewrites on every change costs O(changes) renderings, not O(N) each time."""

    def __init__(self, render: Callable[[str, V], str], same: Callable[[V, V], bool]) -> None:
        self._render = render
        self._same = same
        self._lines: dict[str, tuple[V, str]] = {}

    def lines(self, values: Mapping[str, V]) -> list[str]:
        """The lines of `values` in name order; names no longer in `values` are forgotten."""
        rendered = self._lines
        out = []
        for name in sorted(values):
            value = values[name]
            hit = rendered.get(name)
            if hit is None or not self._same(hit[0], value):
                hit = rendered[name] = (value, self._render(name, value))
            out.append(hit[1])
        if len(rendered) > len(values):
            for gone in rendered.keys() - values.keys():
                del rendered[gone]
        return out
