"""The `socket` kind: connect, optionally send a line, and wait for a reply that matches a regular expression.

One probe for the many services that speak a line protocol: redis (`PING` → `+PONG`), memcached
(`version` → `VERSION`), SMTP / FTP / SSH banners (nothing sent: the server speaks first)."""

from __future__ import annotations

import re
import socket
import time
from typing import Unpack

from pnr.model import CheckBase, SocketCheck
from pnr.probes.base import Probe, ProbeContext, Target, Timing, snippet, timing_of


class SocketProbe(Probe):
    """Ready when the reply read within `timeout` matches `expect`."""

    kind = "socket"

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> SocketProbe:
        assert isinstance(check, SocketCheck)
        return cls(ctx.target(check), check, **timing_of(check))

    def __init__(self, target: Target, check: SocketCheck, **timing: Unpack[Timing]) -> None:
        super().__init__(**timing)
        self.target = target
        self.check = check
        self._expect = re.compile(check.expect)

    def describe(self) -> str:
        sent = f"send {self.check.send!r}, " if self.check.send else ""
        return f"socket {self.target.host}:{self.target.port} ({sent}expect /{self.check.expect}/)"

    def attempt(self) -> tuple[bool, str]:
        where = f"{self.target.host}:{self.target.port}"
        deadline = time.monotonic() + self.timeout
        reply = b""
        try:
            with socket.create_connection((self.target.host, self.target.port), timeout=self.timeout) as sock:
                if self.check.send:
                    sock.sendall(self.check.send.encode())
                while len(reply) < self.check.max_bytes:
                    if self._expect.search(reply.decode(errors="replace")):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                    try:
                        data = sock.recv(self.check.max_bytes - len(reply))
                    except TimeoutError:
                        break
                    if not data:
                        break
                    reply += data
        except OSError as exc:
            if not reply:
                return False, f"cannot talk to {where}: {exc.strerror or exc}"
        text = reply.decode(errors="replace")
        if self._expect.search(text):
            return True, f"{where} answered {snippet(text, 80)!r}"
        if not reply:
            return False, f"{where} sent nothing within {self.timeout:g}s (or closed the connection)"
        return False, f"{where} answered {snippet(text, 120)!r}, which does not match /{self.check.expect}/"
