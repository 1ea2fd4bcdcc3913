"""The `tcp` kind: a connection is accepted and kept open."""

from __future__ import annotations

import socket
from typing import Unpack

from pnr.model import CheckBase, TcpCheck
from pnr.probes.base import Probe, ProbeContext, Target, Timing, timing_of


class TcpProbe(Probe):
    """Ready when a connection is accepted and not closed at once by the peer.

    Docker's userland proxy accepts a connection on a published port even while nothing listens in the
    container, then closes it; a short read tells that apart from a real server, which keeps it open.
    """

    kind = "tcp"
    EOF_WINDOW = 0.05

    def __init__(self, target: Target, **timing: Unpack[Timing]) -> None:
        super().__init__(**timing)
        self.target = target

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> TcpProbe:
        assert isinstance(check, TcpCheck)
        return cls(ctx.target(check), **timing_of(check))

    def describe(self) -> str:
        return f"tcp {self.target.host}:{self.target.port}"

    def attempt(self) -> tuple[bool, str]:
        where = f"{self.target.host}:{self.target.port}"
        try:
            with socket.create_connection((self.target.host, self.target.port), timeout=self.timeout) as sock:
                sock.settimeout(self.EOF_WINDOW)
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    return True, f"connected to {where}"
                except OSError as exc:
                    return False, f"connection reset by {where} ({exc.strerror or exc})"
                if data:
                    return True, f"connected to {where} (server spoke first)"
                return False, "connection accepted and closed at once (nothing listens behind the published port yet)"
        except TimeoutError:
            return False, f"no answer from {where} within {self.timeout:g}s"
        except OSError as exc:
            return False, f"cannot connect to {where}: {exc.strerror or exc}"
