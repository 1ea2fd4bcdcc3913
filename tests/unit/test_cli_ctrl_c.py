"""Ctrl-C in a `pnr up` (or `pnr restart`) process: the first press stops the run from a thread of its own, the
second stops at once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from pnr.cli.view import on_ctrl_c


@pytest.fixture
def sigint_handler() -> Iterator[None]:
    saved = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


@pytest.mark.timeout(30)
def test_the_first_press_stops_the_run_even_when_the_main_thread_holds_a_lock_the_stopping_takes(sigint_handler):
    """The signal handler runs in the main thread wherever it was — here inside a lock that stopping the run
    takes too (as the run's event and socket locks are): the stopping must not wait for the main thread."""
    lock = threading.Lock()
    stopped = threading.Event()

    def interrupt() -> bool:
        with lock:
            stopped.set()
        return True

    pressed = on_ctrl_c(interrupt)
    with lock:
        signal.raise_signal(signal.SIGINT)  # the handler runs now, in this thread, with `lock` held
        assert pressed == [True]
    assert stopped.wait(10)
    with pytest.raises(KeyboardInterrupt):  # the second press: at once
        signal.raise_signal(signal.SIGINT)


@pytest.mark.timeout(30)
def test_a_press_with_nothing_to_stop_stops_at_once(sigint_handler):
    on_ctrl_c(lambda: False)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the handler's thread raises it here a moment later
            time.sleep(0.01)
