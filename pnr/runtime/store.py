"""The signal store: the current truth value of every signal, mirrored as JSON files in a runtime folder.

Format: every `*.json` file directly in the runtime folder is an object `{NAME: {"prompt": str,
"response": [str], "tv": "Y"|"N"|"U"}}`. The state is the merge of all of them, older files first, so the
most recently written file wins for a name it contains. pnr writes its own values to `<domain>.pnr.json`;
`pnr signal set` writes `external.json`; anyone else (a script, a container with the folder mounted) may
drop in a file of their own. pnr's writes hold a lock and replace the file atomically (temp file + rename);
an external file that is half-written or corrupt is reported by name and ignored until it parses again.

A run starts from a clean truth state: the domain file is reset to `system_ready = Y`, and for the signals
the run itself produces, values in files older than the run's start are ignored (stale truth never opens a
gate). Values of external signals (nothing in the domain produces them) survive: they are deliberate inputs.
Freshness is per file (its mtime, on the filesystem's clock), so at the start stale values of the run's own
signals are also dropped from `external.json`: otherwise the next `pnr signal set` would make them look new.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from pydantic import ValidationError

from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model import PnR
from pnr.runtime.chunk_state import ChunkStateFile
from pnr.runtime.files import (
    EXTERNAL_FILE,
    MAX_SIGNAL_FILE_BYTES,
    OWN_SUFFIX,
    RenderedLines,
    atomic_write_text,
    folder_lock,
    own_file_name,
    signal_file_from_lines,
    signal_file_line,
    signal_file_text,
    stamp_of,
)

UNKNOWN = PnR(tv="U")
_ANY = "\0any"  # the waiters `poke` wakes: every targeted waiter registers under it too


def parse_signal_file(text: str) -> dict[str, PnR]:
    """Parse one runtime file; ValueError (with a one-line reason) for anything that is not valid."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be a signal file") from None
    if not isinstance(data, dict):
        raise ValueError("the file must hold a JSON object {NAME: {prompt, response, tv}}")
    out: dict[str, PnR] = {}
    for name, value in data.items():
        try:
            out[str(name)] = PnR.model_validate(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{name}{'.' + loc if loc else ''}: {first['msg']}") from None
    return out


def write_signal_file(path: Path, values: Mapping[str, PnR]) -> None:
    """Replace a signal file (atomically, on disk before the rename); the caller holds the folder lock."""
    atomic_write_text(path, signal_file_text({k: v.model_dump() for k, v in values.items()}))


def update_signal_file(runtime_dir: Path, file_name: str, values: Mapping[str, PnR | None]) -> None:
    """Read-modify-write one file under the folder lock; a None value removes the name."""
    path = runtime_dir / file_name
    with folder_lock(runtime_dir):
        current: dict[str, PnR] = {}
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                current = parse_signal_file(path.read_text())
        for name, value in values.items():
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
        write_signal_file(path, current)


class SignalStore:
    """Current truth values of one domain, with waiting on change.

    `scope` is the set of signals the current run produces: for them, files older than `started_ns`
    count for nothing. Thread-safe; `changed` is notified on every change, in-process or from files.
    """

    def __init__(self, runtime_dir: str | Path, domain: str, scope: set[str] | None = None) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.domain = domain
        self.own_file = self.runtime_dir / own_file_name(domain)
        self.scope: set[str] = set(scope or ())
        self.started_ns = 0
        self.changed = threading.Condition()
        self.changes = 0  # how many recomputations changed a value: whether anything moved in a while
        # name -> (mtime_ns, size, inode, values, mtime_ns of those values). The inode tells apart two atomic
        # writes within one clock tick; the values' own mtime keeps stale content stale while a writer is half-way.
        self._files: dict[str, tuple[int, int, int, dict[str, PnR], int]] = {}
        self._state: dict[str, PnR] = {}
        self.problems: dict[str, str] = {}  # file -> last problem (reported once per change)
        self._listeners: list[Callable[[str, PnR, PnR], None]] = []
        self._waiters: dict[str, set[threading.Event]] = {}  # signal name (or _ANY) -> waiters to wake
        self._waiters_lock = threading.Lock()
        self._refresh_lock = threading.RLock()
        self._deferred_fsync = False  # inside `deferred_fsync()`: the own file's writes skip their fsync ...
        self._unsynced = False  # ... and one is owed at its end
        # each value's line in the own file, rendered once (a PnR is frozen): rendering all of them on every write
        # cost ~8 ms of CPU per write at 500 signals, under the folder lock, O(N²) over a bring-up
        self._own_lines: RenderedLines[PnR] = RenderedLines(
            lambda name, value: signal_file_line(name, value.model_dump()), operator.is_
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start_run(self, initial: Mapping[str, PnR]) -> None:
        """Begin a run from a clean truth state: the domain file holds only `initial` (system_ready)."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.runtime_dir):
            write_signal_file(self.own_file, initial)
            # mtimes come from the filesystem's coarse clock: compare like with like
            self.started_ns = self.own_file.stat().st_mtime_ns
            self._drop_stale_external()
        self.refresh()

    def _drop_stale_external(self) -> None:
        """Remove the run's own signals from external.json (called under the lock, so they predate the run)."""
        path = self.runtime_dir / EXTERNAL_FILE
        try:
            values = parse_signal_file(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # absent, or corrupt: ignored by the store anyway
        if set(values) & self.scope:
            write_signal_file(path, {k: v for k, v in values.items() if k not in self.scope})

    def subscribe(self, listener: Callable[[str, PnR, PnR], None]) -> Callable[[], None]:
        """Call listener(name, old, new) on every change of a value. Returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- reading ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read changed files; return True if any value changed."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        seen: set[str] = set()
        changed = False  # no file read again and none gone: the state cannot have changed (no merge: O(signals))
        try:
            entries = list(os.scandir(self.runtime_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.name.endswith(OWN_SUFFIX) and entry.name != self.own_file.name:
                continue  # another domain's own values: domains sharing a folder must not see each other's truth
            seen.add(entry.name)
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            cached = self._files.get(entry.name)
            if cached and cached[:3] == stamp_of(st):
                continue
            try:
                if st.st_size > MAX_SIGNAL_FILE_BYTES:
                    raise ValueError(
                        f"{st.st_size} bytes; signal files over {MAX_SIGNAL_FILE_BYTES} bytes are not read"
                    )
                values = parse_signal_file(Path(entry.path).read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if self.problems.get(entry.name) != message:
                    self.problems[entry.name] = message
                # keep the last good content (a writer may be half-way), but note the new mtime
                old, old_mtime = (cached[3], cached[4]) if cached else ({}, 0)
                self._files[entry.name] = (*stamp_of(st), old, old_mtime)
                continue
            self.problems.pop(entry.name, None)
            self._files[entry.name] = (*stamp_of(st), values, st.st_mtime_ns)
            changed = True
        for gone in set(self._files) - seen:
            del self._files[gone]
            changed = True
        return self._recompute() if changed else False

    def _ordered_files(self) -> list[tuple[dict[str, PnR], bool]]:
        """(values, stale) per file, oldest first so the newest file wins; equal mtimes (one clock tick) fall
        back to the file name."""
        ordered = sorted(self._files.items(), key=lambda kv: (kv[1][4], kv[0]))
        return [(values, mtime < self.started_ns) for _name, (*_key, values, mtime) in ordered]

    def _merged(self, names: Iterable[str] | None = None) -> dict[str, PnR]:
        """The merged state (of `names` only, when given: a write recomputes what it touched, not the domain)."""
        merged: dict[str, PnR] = {}
        wanted = None if names is None else set(names)
        for values, stale in self._ordered_files():
            for key in values if wanted is None else wanted & values.keys():
                if stale and key in self.scope:
                    continue
                merged[key] = values[key]
        return merged

    def _recompute(self, names: Iterable[str] | None = None) -> bool:
        """Merge the files' values into the state (only `names`, when given); notify about what changed."""
        partial = None if names is None else set(names)
        fresh = self._merged(partial)
        with self.changed:
            old = self._state
            if partial is None:
                merged, keys = fresh, set(old) | set(fresh)
            else:
                merged, keys = dict(old), partial
                for key in partial:
                    if key in fresh:
                        merged[key] = fresh[key]
                    else:
                        merged.pop(key, None)
            self._state = merged
            diff = [
                (k, old.get(k, UNKNOWN), merged.get(k, UNKNOWN))
                for k in keys
                if old.get(k, UNKNOWN) != merged.get(k, UNKNOWN)
            ]
            if diff:
                self.changes += 1
                self.changed.notify_all()
        if diff:
            self._wake({name for name, _before, _after in diff})
        for name, before, after in diff:
            for listener in self._listeners:
                listener(name, before, after)
        return bool(diff)

    def get(self, name: str) -> PnR:
        return self._state.get(name, UNKNOWN)

    def snapshot(self) -> dict[str, PnR]:
        return dict(self._state)

    def holds(self, expected: Mapping[str, PnR]) -> bool:
        """True when every signal's current tv equals the expected tv (responses are not compared)."""
        state = self._state
        return all(state.get(name, UNKNOWN).tv == want.tv for name, want in expected.items())

    def unmet(self, expected: Mapping[str, PnR]) -> dict[str, tuple[str, str]]:
        return {n: (self.get(n).tv, w.tv) for n, w in expected.items() if self.get(n).tv != w.tv}

    # -- writing ---------------------------------------------------------------------------------
    def set(self, values: Mapping[str, PnR]) -> None:
        """Write values into the domain's own file (atomic, locked) and update the state at once. The file's
        content is known from this store's last write (re-read only if someone else wrote it since), and only
        the names written are merged again: a write costs O(1) reads, not O(signals) (O(N²) at 500 chunks)."""
        name = self.own_file.name
        with self._refresh_lock:
            with folder_lock(self.runtime_dir):
                own, as_cached = self._own_values()
                own.update(values)
                lines = self._own_lines.lines(own)
                stamp = atomic_write_text(
                    self.own_file, signal_file_from_lines(lines), durable=not self._deferred_fsync
                )
                self._unsynced = self._deferred_fsync
                self._files[name] = (*stamp, own, stamp[0])
                self.problems.pop(name, None)
            self._recompute(values.keys() if as_cached else None)

    @contextlib.contextmanager
    def deferred_fsync(self) -> Iterator[None]:
        """While a bring-up writes its values, the own file is replaced atomically (a reader sees the old file or
        the new one) but not fsynced on every write: an fsync took 18 ms median, 44 ms p90 on a busy disk, under
        the folder lock that every chunk's write takes. It is made durable once, at the end (`sync`). A crash in
        between leaves an older or empty file, which the next run rewrites."""
        self._deferred_fsync = True
        try:
            yield
        finally:
            self._deferred_fsync = False
            self.sync()

    def sync(self) -> None:
        """Put the own file on disk if a write skipped its fsync."""
        with self._refresh_lock:
            if not self._unsynced:
                return
            self._unsynced = False
            with contextlib.suppress(FileNotFoundError), open(self.own_file, "rb") as fh:
                os.fsync(fh.fileno())

    def _own_values(self) -> tuple[dict[str, PnR], bool]:
        """The own file's values, and whether they are as this store last wrote or read them (else re-read:
        someone else wrote the file since)."""
        cached = self._files.get(self.own_file.name)
        try:
            st = self.own_file.stat()
        except FileNotFoundError:
            return {}, cached is None
        if cached and cached[:3] == stamp_of(st):
            return dict(cached[3]), True
        try:
            return parse_signal_file(self.own_file.read_text(encoding="utf-8")), False
        except (OSError, ValueError):
            return {}, False

    def wait(self, predicate: Callable[[], bool], timeout: float, signals: Iterable[str] | None = None) -> bool:
        """Block until predicate() is true or timeout passes. With `signals`, wake only when one of them changes
        (or on `poke`): a gate waits on its own signals, so a domain of N waiting chunks does not wake N threads
        for every change anywhere (O(N²) wake-ups at 500 chunks). Without, wake on every change."""
        deadline = time.monotonic() + timeout
        if signals is None:
            with self.changed:
                while not predicate():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.changed.wait(left)
            return True
        event = threading.Event()
        names = set(signals)
        with self._waiters_lock:  # registered before the first check: no change can slip in between
            for name in names | {_ANY}:
                self._waiters.setdefault(name, set()).add(event)
        try:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                event.wait(left)
                event.clear()
            return True
        finally:
            with self._waiters_lock:
                for name in names | {_ANY}:
                    self._waiters.get(name, set()).discard(event)

    def _wake(self, names: Iterable[str]) -> None:
        with self._waiters_lock:
            events = [e for name in names for e in self._waiters.get(name, ())]
        for event in events:
            event.set()

    def poke(self) -> None:
        """Wake every waiter (used when the run is aborted)."""
        with self.changed:
            self.changed.notify_all()
        with self._waiters_lock:
            events = list(self._waiters.get(_ANY, ()))
        for event in events:
            event.set()


def read_state(runtime_dir: str | Path, domain: str) -> tuple[dict[str, PnR], dict[str, str]]:
    """The merged state as seen from outside a run, and any file problems."""
    store = SignalStore(runtime_dir, domain)
    store.refresh()
    return store.snapshot(), dict(store.problems)


def make_pnr(name: str, tv: str, response: list[str] | None = None, prompt: str | None = None) -> PnR:
    """Build a PnR from CLI input; ConfigError on a bad tv."""
    try:
        return PnR(prompt=prompt if prompt is not None else f"is {name} set?", response=response or [], tv=tv)
    except ValidationError:
        raise ConfigError("--tv", [ConfigIssue("", f"{tv!r} is not a truth value: use Y, N or U")]) from None


def set_external_signal(runtime_dir: Path, name: str, value: PnR) -> Path:
    """`pnr signal set`: write one value to the folder's external.json (opens gates of a waiting run)."""
    update_signal_file(runtime_dir, EXTERNAL_FILE, {name: value})
    return runtime_dir / EXTERNAL_FILE


def remove_domain_files(runtime_dir: Path, domain: str) -> None:
    """`pnr down`: the domain's own truth values and chunk states go; external values stay (deliberate inputs)."""
    with contextlib.suppress(FileNotFoundError):
        (runtime_dir / own_file_name(domain)).unlink()
    ChunkStateFile(runtime_dir, domain).delete()
