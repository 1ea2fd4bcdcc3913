"""The chunk-state file `.pnr/<domain>.chunks.json`: each chunk's phase and container of the last run, with
the pid of the process that runs it, so `pnr status` can tell a live run from a finished or dead one."""

from __future__ import annotations

import contextlib
import json
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pnr.processes import alive
from pnr.records import JsonObject
from pnr.runtime.files import FileStamp, RenderedLines, atomic_write_text, chunk_state_path, file_stamp


class ChunkStateFile:
    """Read, merge-write and delete one domain's chunk-state file."""

    def __init__(self, runtime_dir: Path, domain: str) -> None:
        self.domain = domain
        self.path = chunk_state_path(runtime_dir, domain)
        # the file's stamp as this object last wrote it, each chunk's state in it, and each state's JSON text
        self._written: FileStamp | None = None
        self._states: dict[str, Mapping[str, object]] = {}
        self._lines: RenderedLines[Mapping[str, object]] = RenderedLines(
            lambda name, state: f"{json.dumps(name)}: {json.dumps(state, sort_keys=True)}", operator.eq
        )

    def read(self) -> JsonObject:
        """The file's content ({} when missing or unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def chunks(self) -> dict[str, Any]:
        """Each chunk's state as the run wrote it (`ChunkProgress.to_json`), trusted as pnr's own file."""
        chunks = self.read().get("chunks", {})
        return chunks if isinstance(chunks, dict) else {}

    def write(self, chunks: Mapping[str, Mapping[str, object]], flow_run_id: str, pid: int | None = None) -> None:
        """Merge `chunks` (name → state) into the file: chunks of other CPUXs of the domain stay. `pid`: the
        process the run belongs to (the `pnr up` client of a run the resident runner executes), default this one.
        While the file is as this object last wrote it, it is not read again, and only the chunks whose state
        changed are rendered again: a run rewrites the file every fraction of a second, and rendering all of
        a 500-chunk domain each time was a fifth of the runner's CPU."""
        if self._written is None or self._written != file_stamp(self.path):
            self._states = self.chunks()
        self._states.update(chunks)
        body = ", ".join(self._lines.lines(self._states))
        head = {"domain": self.domain, "flow_run_id": flow_run_id, "pid": pid or os.getpid()}
        # the JSON of {"chunks": ..., **head} with sorted keys, as json.dumps(..., sort_keys=True) writes it
        text = f'{{"chunks": {{{body}}}, {json.dumps(head, sort_keys=True)[1:]}'
        # advisory, rewritten while a run is on: no fsync
        self._written = atomic_write_text(self.path, text + "\n", durable=False)

    def run_alive(self) -> bool:
        """True while another live process runs (or watches) the domain."""
        pid = self.read().get("pid")
        return isinstance(pid, int) and pid != os.getpid() and alive(pid)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
