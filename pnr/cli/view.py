"""What `pnr up` and `pnr restart` both show: progress lines, the chunk table; and their Ctrl-C."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pnr.cli.common import err, escape, out

if TYPE_CHECKING:
    from types import FrameType

    from pnr.records import DomainStatus, RunEvent

PHASE_STYLE = {
    "waiting": "yellow",
    "starting": "cyan",
    "probing": "blue",
    "ready": "green",
    "failed": "red",
    "blocked": "red",
    "lost": "red",
}


class Progress:
    """Renders chunk phase changes as lines a person can follow."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.last: dict[str, tuple[str, str]] = {}

    def restart(self) -> None:
        """Count the seconds from now."""
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        """`text` after the seconds since the start."""
        out.print(f"  {time.monotonic() - self.t0:7.2f}s  {text}")

    def __call__(self, event: RunEvent) -> None:
        from pnr.records import RunNote

        if isinstance(event, RunNote):  # watch started / ended (the outcome note is the caller's)
            if event.what.startswith(("watch.", "early.")):
                self.line(f"[bold]{escape(event.message)}[/]")
            return
        if self.last.get(event.chunk) == (event.phase, event.detail):
            return
        self.last[event.chunk] = (event.phase, event.detail)
        style = PHASE_STYLE.get(event.phase, "white")
        first = event.detail.splitlines()[0] if event.detail else ""
        self.line(f"{event.chunk:<22} [{style}]{event.phase:<9}[/] {escape(first)}")


def chunk_table(status: DomainStatus, engines: bool) -> None:
    """The chunk table of `status`; `engines`: the domain names engines, so say which one each chunk runs on."""
    rows = []
    for name, c in status.chunks.items():
        style = {"completed": "green", "failed": "red", "stopped": "red"}.get(c.status, "yellow")
        rows.append(
            (
                name,
                f"[{style}]{c.status}[/]",
                *([c.engine] if engines else []),
                c.container or "-",
                escape(c.detail.splitlines()[0] if c.detail else ""),
            )
        )
    columns = ("chunk", "status", *(["engine"] if engines else []), "container", "detail")
    out.table(f"domain {status.domain}", columns, rows)


def server_started(ui_url: str | None) -> None:
    """The line that says pnr's server was started for this command and stays up."""
    out.print(
        f"started pnr's Prefect server in the background: UI {ui_url} "
        "(it stays up for the next commands; `pnr server stop` stops it)"
    )


def on_ctrl_c(interrupt: Callable[[], object]) -> list[bool]:
    """First Ctrl-C: stop the runs cleanly (they end Failed, state recorded). Second: stop at once.

    The handler runs in the main thread wherever it was, perhaps holding a lock the run's stoppers take (an
    event's, a socket's): it only notes the press and hands the stopping to a thread of its own. When there was
    nothing to stop, that thread raises KeyboardInterrupt in the main thread as a second press would."""
    import _thread
    import signal
    import threading

    flag: list[bool] = []

    def stop() -> None:
        if interrupt():
            err.print("[yellow]Ctrl-C: stopping (press again to stop at once) ...[/]")
        else:
            _thread.interrupt_main(signal.SIGINT)  # runs `handler` again, now pressed: KeyboardInterrupt

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.append(True)
        threading.Thread(target=stop, name="pnr-ctrl-c", daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    return flag
