"""One file lock for Linux, macOS and Windows (filelock: flock on POSIX, LockFileEx on Windows), for the runtime
folder, pnr's Prefect server and its runner. filelock is imported when a lock is first taken."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_FOREVER = 365 * 86400.0


@contextlib.contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """An exclusive lock on `path` between processes and between the threads of this process (a mutex per
    path, so a waiting thread wakes as soon as the lock is free instead of polling the file). `timeout`:
    seconds to wait, then TimeoutError; None waits for good."""
    import filelock

    mutex = _thread_mutex(str(path.absolute()))
    began = time.monotonic()
    if not mutex.acquire(timeout=-1 if timeout is None else timeout):
        raise TimeoutError(f"{path} is locked")
    try:
        left = -1.0 if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        try:
            # a finite timeout however long: filelock refuses to wait forever on a lock this process holds
            # through another object, which the mutex above already rules out
            lock = filelock.FileLock(str(path))
            lock.acquire(timeout=_FOREVER if left < 0 else left, poll_interval=0.005)
        except filelock.Timeout:
            raise TimeoutError(f"{path} is locked by another process") from None
        try:
            yield
        finally:
            lock.release()
    finally:
        mutex.release()


@functools.cache
def _thread_mutex(path: str) -> threading.Lock:
    """One mutex per lock file for the threads of this process (a lock file per runtime folder or state dir)."""
    return threading.Lock()
