"""The Prefect settings pnr's runs use: no flow heartbeat, and no CSRF token request when the server wants none."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, PREFECT_FLOWS_HEARTBEAT_FREQUENCY

from pnr.backend.runner_process import server_wants_csrf
from pnr.prefect.flows import quiet_prefect_run
from tests.unit.fakes import stub_api


def test_a_run_without_csrf_makes_clients_that_ask_for_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PNR_HEARTBEAT", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never called: clients are only made
    with quiet_prefect_run(csrf=False):
        assert PREFECT_CLIENT_CSRF_SUPPORT_ENABLED.value() is False
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        assert get_client(sync_client=True)._client.enable_csrf_support is False
    with quiet_prefect_run():
        assert PREFECT_CLIENT_CSRF_SUPPORT_ENABLED.value() is True
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        assert get_client(sync_client=True)._client.enable_csrf_support is True


class _Api(BaseHTTPRequestHandler):
    status, body = 422, b'{"detail":"CSRF protection is disabled."}'

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    with stub_api(_Api) as (url, handler):
        yield url, handler


def test_the_runner_skips_csrf_only_when_the_server_says_it_does_not_enforce_it(api: tuple[str, type[_Api]]) -> None:
    url, handler = api
    assert server_wants_csrf(url) is False  # Prefect's answer when CSRF protection is off
    handler.status, handler.body = 200, b'{"token": "t", "expiration": "2030-01-01T00:00:00Z", "client": "c"}'
    assert server_wants_csrf(url) is True
    handler.status, handler.body = 422, b'{"detail": "something else"}'
    assert server_wants_csrf(url) is True
    assert server_wants_csrf("http://127.0.0.1:9/api") is True  # no answer: when in doubt, it does
