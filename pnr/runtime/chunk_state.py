"""The chunk-state file `.pnr/<domain>.chunks.json`: each chunk's phase and container of the last run, with
the pid of the process that runs it, so `pnr status` can tell a live run from a finished or dead one."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from pnr.processes import alive
from pnr.runtime.files import atomic_write_json, chunk_state_path


class ChunkStateFile:
    """Read, merge-write and delete one domain's chunk-state file."""

    def __init__(self, runtime_dir: Path, domain: str) -> None:
        self.domain = domain
        self.path = chunk_state_path(runtime_dir, domain)
        # (file stat, chunks) of this object's last write
        self._written: tuple[tuple[int, int, int] | None, dict[str, Any]] | None = None

    def read(self) -> dict[str, Any]:
        """The file's content ({} when missing or unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def chunks(self) -> dict[str, Any]:
        chunks = self.read().get("chunks", {})
        return chunks if isinstance(chunks, dict) else {}

    def write(self, chunks: dict[str, Any], flow_run_id: str, pid: int | None = None) -> None:
        """Merge `chunks` (name → state) into the file: chunks of other CPUXs of the domain stay. `pid`: the
        process the run belongs to (the `pnr up` client of a run the resident runner executes), default this one.
        While the file is as this object last wrote it, it is not read again (a run rewrites it often)."""
        unchanged = self._written is not None and self._written[0] is not None and self._written[0] == self._stat()
        merged = dict(self._written[1]) if unchanged and self._written else self.chunks()
        merged.update(chunks)
        atomic_write_json(
            self.path,
            {"domain": self.domain, "pid": pid or os.getpid(), "flow_run_id": flow_run_id, "chunks": merged},
            durable=False,  # advisory, rewritten every fraction of a second while a run is on
            compact=True,  # pnr's own file: one line, by the C encoder (indented JSON is ~10x slower)
        )
        self._written = (self._stat(), merged)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def run_alive(self) -> bool:
        """True while another live process runs (or watches) the domain."""
        pid = self.read().get("pid")
        return isinstance(pid, int) and pid != os.getpid() and alive(pid)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
