"""The runtime layer: the only owner of the runtime folder (signal files, the chunk-state file, the lock)."""

from pnr.runtime.chunk_state import ChunkStateFile
from pnr.runtime.files import EXTERNAL_FILE, META_DIR, own_file_name
from pnr.runtime.store import (
    UNKNOWN,
    SignalStore,
    make_pnr,
    read_state,
    remove_domain_files,
    set_external_signal,
    update_signal_file,
)

__all__ = [
    "EXTERNAL_FILE",
    "META_DIR",
    "UNKNOWN",
    "ChunkStateFile",
    "SignalStore",
    "make_pnr",
    "own_file_name",
    "read_state",
    "remove_domain_files",
    "set_external_signal",
    "update_signal_file",
]
