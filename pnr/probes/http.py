"""The `http` kind: status, body and JSON field over http or https."""

from __future__ import annotations

import functools
import json
import re
import ssl
from typing import Unpack

import httpx

from pnr.model import CheckBase, HttpCheck, parse_json_path
from pnr.probes.base import Probe, ProbeContext, Target, Timing, snippet, timing_of
from pnr.records import JsonValue


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every http probe of the process: building one loads the CA bundle, which
    costs tens of milliseconds of CPU per probe (per chunk) otherwise — even for plain http."""
    return ssl.create_default_context()


def json_lookup(data: JsonValue, steps: list[str | int]) -> tuple[bool, JsonValue]:
    """(found, the value at `steps`) in parsed JSON; (False, None) when there is none."""
    for step in steps:
        # two branches, not one `or`: each narrows `data` for the type checker
        if isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):  # noqa: SIM114
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict) and step in data:
            data = data[step]
        else:
            return False, None
    return True, data


class HttpProbe(Probe):
    """Ready when the request answers an expected status and every body condition holds."""

    kind = "http"

    @classmethod
    def from_check(cls, check: CheckBase, ctx: ProbeContext) -> HttpProbe:
        assert isinstance(check, HttpCheck)
        return cls(ctx.target(check), check, transport=ctx.transport, **timing_of(check))

    def __init__(
        self, target: Target, check: HttpCheck, transport: httpx.BaseTransport | None = None, **timing: Unpack[Timing]
    ) -> None:
        super().__init__(**timing)
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.check = check
        self.url = f"{check.scheme}://{host}:{target.port}{check.path}"
        self._regex = re.compile(check.body_regex) if check.body_regex is not None else None
        self._json_steps = parse_json_path(check.json_path) if check.json_path is not None else None
        self._client = httpx.Client(
            timeout=self.timeout,
            transport=transport,
            follow_redirects=check.follow_redirects,
            trust_env=False,
            verify=_tls_context() if check.tls_verify else False,
        )

    def describe(self) -> str:
        return f"http {self.check.method} {self.url} expecting {self.check.expected_code}"

    def attempt(self) -> tuple[bool, str]:
        check = self.check
        what = f"{check.method} {self.url}"
        try:
            response = self._client.request(check.method, self.url, headers=check.headers, content=check.body)
        except httpx.TimeoutException:
            return False, f"{what}: no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            text = str(exc) or "connection failed"
            hint = (
                "; for a self-signed certificate set tls_verify: false" if "CERTIFICATE_VERIFY_FAILED" in text else ""
            )
            return False, f"{what}: {type(exc).__name__}: {snippet(text)}{hint}"
        body = response.text
        seen = f"{what} -> {response.status_code}"
        if not check.code_ok(response.status_code):
            return False, f"{seen} (expected {check.expected_code}); body: {snippet(body)!r}"
        if check.body_contains is not None and check.body_contains not in body:
            return False, f"{seen} but body lacks {check.body_contains!r}; body: {snippet(body)!r}"
        if self._regex is not None and not self._regex.search(body):
            return False, f"{seen} but body does not match /{check.body_regex}/; body: {snippet(body)!r}"
        if self._json_steps is not None:
            try:
                data: JsonValue = json.loads(body)
            except ValueError:
                return False, f"{seen} but the body is not JSON; body: {snippet(body)!r}"
            found, value = json_lookup(data, self._json_steps)
            if not found:
                return False, f"{seen} but the body has no {check.json_path}; body: {snippet(body)!r}"
            if check.compares_json_value and value != check.json_value:
                return (
                    False,
                    f"{seen} but {check.json_path} is {json.dumps(value)} (expected {json.dumps(check.json_value)})",
                )
            return True, f"{seen}, {check.json_path} = {snippet(json.dumps(value), 80)}"
        return True, seen

    def close(self) -> None:
        self._client.close()
