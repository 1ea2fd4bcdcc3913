"""Probe kinds, timing and config validation, without a daemon: fakes for the engine, MockTransport for HTTP,
a local TLS server for certificate verification, and a monkeypatched entry point for third-party kinds."""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from pnr import probes
from pnr.exceptions import ConfigError
from pnr.model import (
    PLUGINS,
    AllCheck,
    ExecCheck,
    HttpCheck,
    PluginCheck,
    TcpCheck,
    parse_domain,
    parse_expected_code,
)
from pnr.model.plan import make_plan, produced_by
from pnr.probes import NeverReady, Probe, ProbeContext, Target, make_probe
from pnr.probes.composite import AllProbe, AnyProbe
from pnr.probes.docker import DockerProbe
from pnr.probes.exec import ExecProbe
from pnr.probes.http import HttpProbe
from pnr.probes.log import LogProbe
from pnr.probes.signal import SignalProbe
from pnr.runtime.store import SignalStore, update_signal_file
from tests.unit.fakes import FakeEngineBase

ROOT = Path(__file__).resolve().parents[2]


def _domain(check: dict[str, Any] | None, **chunk: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "c", "container": {"name": "c1", "image": "x", "ports": {"80": "18080"}}, **chunk}
    if check is not None:
        body["health_check"] = check
    return {"name": "d", "cpuxs": {"main": {"design_chunks": [body]}}}


def _check(check: dict[str, Any], **chunk: Any) -> Any:
    return parse_domain(_domain(check, **chunk)).cpuxs["main"].design_chunks[0].health_check


def _issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make_plan(parse_domain(data))
    return [f"{i.path}: {i.message}" for i in info.value.issues]


# -- timing (Probe.run) ------------------------------------------------------------------------------
class Scripted(Probe):
    """Returns scripted outcomes; each attempt takes no time on the fake clock."""

    def __init__(self, outcomes: list[Any], **timing: Any) -> None:
        timing.setdefault("timeout", 1)
        super().__init__(**timing)
        self.outcomes = list(outcomes)
        self.calls = 0

    def describe(self) -> str:
        return "scripted"

    def attempt(self) -> tuple[bool, str]:
        self.calls += 1
        item = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(item, Exception):
            raise item
        return item, f"attempt {self.calls}: {'up' if item else 'down'}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _run(probe: Probe) -> tuple[probes.ProbeResult, FakeClock]:
    clock = FakeClock()
    return probe.run(sleep=clock.sleep, clock=clock), clock


def test_first_attempt_is_immediate_and_success_ends_probing() -> None:
    result, clock = _run(Scripted([True], interval=0.25, deadline=10))
    assert result.ok and result.attempts == 1 and clock.sleeps == []


def test_success_threshold_needs_consecutive_successes() -> None:
    probe = Scripted([True, False, True, True, True], interval=1, deadline=100, success_threshold=3)
    result, _ = _run(probe)
    assert result.ok and probe.calls == 5 and "3 successes in a row" in result.last


def test_failure_threshold_ignores_failures_inside_start_period() -> None:
    probe = Scripted([False], interval=1, deadline=100, start_period=3, failure_threshold=2)
    result, _ = _run(probe)
    # attempts at t=0,1,2 are inside the start period; t=3 and t=4 count: gives up at the 5th attempt
    assert not result.ok and probe.calls == 5 and "failure_threshold 2" in result.last


def test_deadline_ends_probing_with_last_observation() -> None:
    result, clock = _run(Scripted([False], interval=1, deadline=5))
    assert not result.ok and "gave up after" in result.last and "attempt" in result.last
    assert clock.now <= 5 and result.attempts == 6  # t = 0, 1, ..., 5


def test_never_ready_fails_at_once() -> None:
    result, _clock = _run(Scripted([False, NeverReady("no HEALTHCHECK")], interval=1, deadline=100))
    assert not result.ok and result.attempts == 2 and "waiting will not help" in result.last


def test_attempt_count_is_not_capped_by_history() -> None:
    result, _ = _run(Scripted([False] * 30 + [True], interval=1, deadline=100))
    assert result.ok and result.attempts == 31 and len(result.history) == 20


# -- config ------------------------------------------------------------------------------------------
def test_seed_config_still_loads_verbatim() -> None:
    plan = make_plan(parse_domain(json.loads((ROOT / "config" / "seed_example.json").read_text())))
    check = plan.chunks["mongodb"].health_check
    assert isinstance(check, TcpCheck) and check.port_key == "27017" and check.target == "host"
    assert check.interval_seconds == 0.25 and check.start_period_seconds == 0 and check.success_threshold == 1
    assert check.failure_threshold is None and check.deadline_seconds == 60


@pytest.mark.parametrize(
    "spec,ok,bad",
    [
        (200, [200], [201]),
        ([200, 204], [200, 204], [201]),
        ("2xx", [200, 299], [300, 199]),
        ("200-204", [200, 204], [205]),
    ],
)
def test_expected_code_forms(spec: Any, ok: list[int], bad: list[int]) -> None:
    check = _check({"type": "http", "port_key": "80", "expected_code": spec})
    assert all(check.code_ok(c) for c in ok) and not any(check.code_ok(c) for c in bad)


@pytest.mark.parametrize(
    "check,where,text",
    [
        ({"type": "http", "port_key": "80", "expected_code": "6xx"}, "health_check.expected_code", "expected_code"),
        ({"type": "http", "port_key": "80", "body_regex": "("}, "health_check.body_regex", "regular expression"),
        ({"type": "http", "port_key": "80", "json_value": 1}, "health_check", "json_value needs json_path"),
        ({"type": "http", "port_key": "80", "json_path": "$..x"}, "health_check.json_path", "json_path"),
        ({"type": "exec", "command": []}, "health_check.command", "must not be empty"),
        ({"type": "log", "pattern": "[", "count": 2}, "health_check.pattern", "regular expression"),
        (
            {"type": "tcp", "port_key": "80", "start_period_seconds": 5, "deadline_seconds": 5},
            "health_check",
            "start_period_seconds",
        ),
        (
            {"type": "nope"},
            "health_check",
            "use one of 'tcp', 'http', 'exec', 'log', 'docker', 'signal', 'socket', 'all', 'any'",
        ),
        ({"type": "exec", "command": "true", "port_kye": "80"}, "health_check.port_kye", "unknown key"),
        (
            {"type": "all", "checks": [{"type": "tcp", "port_key": "80", "interval_seconds": 1}]},
            "health_check.checks",
            "outer check owns timing",
        ),
        (
            {"type": "any", "checks": [{"type": "http", "port_key": "80", "pathh": "/"}]},
            "health_check.checks[0].pathh",
            "did you mean 'path'",
        ),
    ],
)
def test_bad_checks_name_the_json_path(check: dict[str, Any], where: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_domain(_domain(check))
    rendered = [f"{i.path}: {i.message}" for i in info.value.issues]
    assert any(r.startswith(f"cpuxs.main.design_chunks[0].{where}: ") and text in r for r in rendered), rendered


def test_port_key_only_required_for_kinds_that_dial() -> None:
    plan = make_plan(parse_domain(_domain({"type": "exec", "command": "true"})))
    assert isinstance(plan.chunks["c"].health_check, ExecCheck)
    issues = _issues(_domain({"type": "all", "checks": [{"type": "log", "pattern": "x"}, {"type": "tcp"}]}))
    assert issues == [issues[0]] and issues[0].startswith(
        "cpuxs.main.design_chunks[0].health_check.checks[1].port_key: "
    )


def test_network_target_accepts_an_unpublished_container_port() -> None:
    make_plan(parse_domain(_domain({"type": "tcp", "port_key": "6379", "target": "network"})))
    issues = _issues(_domain({"type": "tcp", "port_key": "6379"}))
    assert "target" in issues[0] and "network" in issues[0]


def test_job_chunk_with_health_check_is_a_plan_error() -> None:
    issues = _issues(_domain({"type": "tcp", "port_key": "80"}, kind="job"))
    assert issues[0].startswith("cpuxs.main.design_chunks[0].health_check: a job chunk")


def test_signal_probe_signal_counts_as_produced_by_its_chunk() -> None:
    plan = make_plan(parse_domain(_domain({"type": "any", "checks": [{"type": "signal", "signal": "self_ready"}]})))
    assert "self_ready" in produced_by(plan.chunks["c"]) and "self_ready" not in plan.external


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "probes").glob("*.json")), ids=lambda p: p.name)
def test_every_example_config_validates(path: Path) -> None:
    from pnr.model.plan import load_plan

    load_plan(str(path))


# -- http ---------------------------------------------------------------------------------------------
def _http(check: dict[str, Any], handler: Any) -> HttpProbe:
    parsed = _check({"type": "http", "port_key": "80", **check})
    probe = make_probe(parsed, Target("svc", 80), transport=httpx.MockTransport(handler))
    assert isinstance(probe, HttpProbe)
    return probe


def test_http_method_headers_body_and_code_list() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    probe = _http(
        {"method": "post", "headers": {"X-Token": "t"}, "body": "ping", "path": "/hc", "expected_code": [200, 204]},
        handler,
    )
    assert probe.attempt() == (True, "POST http://svc:80/hc -> 204")
    assert seen[0].method == "POST" and seen[0].headers["x-token"] == "t" and seen[0].content == b"ping"


def test_http_status_class_and_body_regex() -> None:
    bodies = iter(["starting", "state: READY"])
    probe = _http({"expected_code": "2xx", "body_regex": "READY$"}, lambda r: httpx.Response(201, text=next(bodies)))
    ok, observation = probe.attempt()
    assert not ok and "does not match /READY$/" in observation and "starting" in observation
    assert probe.attempt()[0]


def test_http_wrong_status_reports_code_and_body() -> None:
    probe = _http({}, lambda r: httpx.Response(503, text="warming up"))
    ok, observation = probe.attempt()
    assert not ok and "-> 503 (expected 200)" in observation and "warming up" in observation


def test_http_json_path_equals() -> None:
    docs = iter([{"status": "starting"}, {"checks": [{"status": "UP"}]}, {"status": "UP"}])
    probe = _http({"json_path": "$.status", "json_value": "UP"}, lambda r: httpx.Response(200, json=next(docs)))
    ok, observation = probe.attempt()
    assert not ok and '$.status is "starting" (expected "UP")' in observation
    ok, observation = probe.attempt()
    assert not ok and "has no $.status" in observation
    assert probe.attempt() == (True, 'GET http://svc:80/ -> 200, $.status = "UP"')


def test_http_json_path_without_value_needs_presence_and_indexes_lists() -> None:
    probe = _http(
        {"json_path": "items[1].id"}, lambda r: httpx.Response(200, json={"items": [{"id": 1}, {"id": None}]})
    )
    assert probe.attempt()[0]
    probe = _http({"json_path": "$.x"}, lambda r: httpx.Response(200, text="<html>"))
    assert "not JSON" in probe.attempt()[1]


def test_http_connection_error_is_an_observation() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ok, observation = _http({}, handler).attempt()
    assert not ok and "ConnectError" in observation and "refused" in observation


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A local HTTPS server with a self-signed certificate (openssl), for verify on/off."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_https_with_verification_rejects_a_self_signed_certificate(tls_server: int) -> None:
    probe = make_probe(_check({"type": "http", "port_key": "80", "scheme": "https"}), Target("127.0.0.1", tls_server))
    ok, observation = probe.attempt()
    probe.close()
    assert not ok and "CERTIFICATE_VERIFY_FAILED" in observation and "tls_verify: false" in observation


def test_https_without_verification_accepts_it(tls_server: int) -> None:
    check = _check(
        {
            "type": "http",
            "port_key": "80",
            "scheme": "https",
            "tls_verify": False,
            "json_path": "$.ok",
            "json_value": True,
        }
    )
    probe = make_probe(check, Target("127.0.0.1", tls_server))
    ok, observation = probe.attempt()
    probe.close()
    assert ok, observation


# -- engine-backed kinds, with a fake engine ---------------------------------------------------------
class FakeEngine(FakeEngineBase):
    def __init__(self) -> None:
        self.exec_results: list[Any] = []
        self.logs = ""
        self.health_states: list[tuple[str | None, str]] = []
        self.ips: dict[str, str] = {"pnr_d": "172.30.0.5"}

    def exec_run(self, cid: str, command: list[str]) -> tuple[int, str]:
        item = self.exec_results.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def logs_text(self, cid: str, stdout: bool = True, stderr: bool = True) -> str:
        return self.logs

    def health(self, cid: str) -> tuple[str | None, str]:
        return self.health_states.pop(0) if len(self.health_states) > 1 else self.health_states[0]

    def container_ip(self, cid: str, network: str | None) -> str | None:
        return self.ips.get(network or "")

    def probe_host(self, bind_ip: str) -> str:
        return "127.0.0.1"


def _ctx(engine: FakeEngine, **kw: Any) -> ProbeContext:
    return ProbeContext(engine=engine, container_id="abc123", network="pnr_d", **kw)


def test_exec_probe_exit_code_and_output_match() -> None:
    engine = FakeEngine()
    engine.exec_results = [
        (1, "no"),
        (0, "status: starting"),
        (0, "status: accepting connections"),
        RuntimeError("boom"),
    ]
    probe = make_probe(_check({"type": "exec", "command": "pg_isready -q", "output_regex": "accepting"}), _ctx(engine))
    assert isinstance(probe, ExecProbe)
    assert probe.attempt() == (False, "`pg_isready -q` exited 1; output: 'no'")
    assert "does not match /accepting/" in probe.attempt()[1]
    assert probe.attempt() == (True, "`pg_isready -q` exited 0")
    assert "could not run: boom" in probe.attempt()[1]


def test_exec_probe_times_out_a_hanging_command() -> None:
    engine = FakeEngine()
    gate = threading.Event()
    engine.exec_run = lambda cid, cmd: gate.wait(5)  # type: ignore[method-assign]
    probe = make_probe(_check({"type": "exec", "command": ["sleep", "9"], "timeout_seconds": 0.1}), _ctx(engine))
    ok, observation = probe.attempt()
    gate.set()
    assert not ok and "did not exit within 0.1s" in observation


def test_log_probe_counts_matches() -> None:
    engine = FakeEngine()
    probe = make_probe(_check({"type": "log", "pattern": "ready to accept", "count": 2}), _ctx(engine))
    assert isinstance(probe, LogProbe)
    engine.logs = "booting\nready to accept connections\n"
    ok, observation = probe.attempt()
    assert not ok and "seen 1 of 2" in observation and "ready to accept connections" in observation
    engine.logs += "restarting\nready to accept connections\n"
    assert probe.attempt()[0]


def test_docker_probe_keeps_probing_through_unhealthy_until_healthy() -> None:
    engine = FakeEngine()
    engine.health_states = [
        ("starting", ""),
        ("unhealthy", "exit 1: "),
        ("unhealthy", "exit 1: "),
        ("healthy", "exit 0: ok"),
    ]
    probe = make_probe(_check({"type": "docker", "interval_seconds": 1, "deadline_seconds": 30}), _ctx(engine))
    assert isinstance(probe, DockerProbe)
    result, _ = _run(probe)
    assert result.ok and result.attempts == 4 and "healthy" in result.last


def test_docker_probe_unhealthy_fails_only_at_the_deadline() -> None:
    engine = FakeEngine()
    engine.health_states = [("unhealthy", "exit 1: no file")]
    result, _clock = _run(
        make_probe(_check({"type": "docker", "interval_seconds": 1, "deadline_seconds": 5}), _ctx(engine))
    )
    assert not result.ok and result.attempts == 6 and "health is unhealthy; last check: exit 1: no file" in result.last


def test_docker_probe_without_healthcheck_fails_fast() -> None:
    engine = FakeEngine()
    engine.health_states = [(None, "")]
    result, _ = _run(make_probe(_check({"type": "docker"}), _ctx(engine)))
    assert not result.ok and result.attempts == 1 and "no HEALTHCHECK" in result.last


def test_network_target_uses_the_container_address_and_port() -> None:
    engine = FakeEngine()
    probe = make_probe(_check({"type": "tcp", "port_key": "6379", "target": "network"}), _ctx(engine))
    assert probe.describe() == "tcp 172.30.0.5:6379"
    check = _check({"type": "http", "port_key": "80", "target": "network"})
    from pnr.model import parse_port

    probe = make_probe(check, _ctx(engine, ports={"80": parse_port("80", "18080")}))
    assert isinstance(probe, HttpProbe) and probe.url == "http://172.30.0.5:80/"
    probe.close()


def test_signal_probe_reads_files_written_by_others(tmp_path: Path) -> None:
    store = SignalStore(tmp_path, "d", scope={"svc_ready"})
    store.start_run({})
    probe = make_probe(_check({"type": "signal", "signal": "svc_ready"}), ProbeContext(store=store))
    assert isinstance(probe, SignalProbe)
    assert probe.attempt() == (False, "svc_ready is U (waiting for Y)")
    update_signal_file(tmp_path, "svc.json", {"svc_ready": _pnr("Y")})
    assert probe.attempt() == (True, "svc_ready is Y")


def _pnr(tv: str) -> Any:
    from pnr.model import PnR

    return PnR(prompt="is svc ready?", response=["yes"], tv=tv)  # type: ignore[arg-type]


def test_all_latches_passed_children_and_any_needs_one() -> None:
    a, b = (
        Scripted([False, True, False], interval=1, deadline=9),
        Scripted([False, False, True], interval=1, deadline=9),
    )
    both = AllProbe([a, b], interval=1, timeout=1, deadline=9)
    assert not both.attempt()[0]
    ok, observation = both.attempt()
    assert not ok and observation.startswith("1/2 passed")
    assert both.attempt() == (True, "all 2 checks passed")
    assert a.calls == 2  # a passed at its 2nd attempt and was not asked again

    never, maybe = Scripted([NeverReady("no")], interval=1, deadline=9), Scripted([False, True], interval=1, deadline=9)
    either = AnyProbe([never, maybe], interval=1, timeout=1, deadline=9)
    assert not either.attempt()[0]
    assert either.attempt() == (True, "attempt 2: up")
    with pytest.raises(NeverReady):
        AnyProbe([Scripted([NeverReady("x")], interval=1, deadline=9)], interval=1, timeout=1, deadline=9).attempt()


def test_composite_from_config_builds_child_probes() -> None:
    engine = FakeEngine()
    check = _check(
        {
            "type": "all",
            "deadline_seconds": 5,
            "checks": [{"type": "log", "pattern": "up"}, {"type": "exec", "command": "true", "timeout_seconds": 3}],
        }
    )
    assert isinstance(check, AllCheck)
    probe = make_probe(check, _ctx(engine))
    assert isinstance(probe, AllProbe) and [type(c) for c in probe.children] == [LogProbe, ExecProbe]
    assert probe.children[1].timeout == 3 and probe.deadline == 5


# -- third-party kinds -------------------------------------------------------------------------------
class RedisPingCheck(PluginCheck):
    type: Literal["redis-ping"]
    password: str | None = None


class RedisPingProbe(Probe):
    check_model = RedisPingCheck

    def __init__(self, target: Target, **timing: Any) -> None:
        super().__init__(**timing)
        self.target = target

    @classmethod
    def from_check(cls, check: Any, ctx: ProbeContext) -> Probe:
        return cls(Target("127.0.0.1", 6379), **probes.timing_of(check))

    def describe(self) -> str:
        return "redis PING"

    def attempt(self) -> tuple[bool, str]:
        return True, "PONG"


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Any:
    ep = importlib.metadata.EntryPoint(name="redis-ping", value=f"{__name__}:RedisPingProbe", group="pnr.probes")
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module_pnr:Probe", group="pnr.probes")
    real = importlib.metadata.entry_points

    def fake(**kw: Any) -> Any:
        if kw.get("group") == "pnr.probes":
            return importlib.metadata.EntryPoints([ep, broken])
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    with pytest.warns(UserWarning, match="broken"):
        probes.load_plugins(reload=True)
    yield
    PLUGINS.unregister("redis-ping")


def test_entry_point_probe_kind_validates_like_a_builtin(plugin: Any) -> None:
    check = _check({"type": "redis-ping", "password": "s", "interval_seconds": 0.5})
    assert isinstance(check, RedisPingCheck) and check.password == "s" and check.interval_seconds == 0.5
    probe = make_probe(check, ProbeContext())
    assert isinstance(probe, RedisPingProbe) and probe.interval == 0.5 and probe.attempt() == (True, "PONG")
    with pytest.raises(ConfigError) as info:
        parse_domain(_domain({"type": "redis-ping", "pasword": "s"}))
    assert [i.path for i in info.value.issues] == ["cpuxs.main.design_chunks[0].health_check.pasword"]
    with pytest.raises(ConfigError) as info:
        parse_domain(_domain({"type": "redis-pong"}))
    assert "'redis-ping'" in info.value.issues[0].message  # listed among the kinds


def test_unregistered_kind_is_rejected_without_plugins() -> None:
    with pytest.raises(ConfigError) as info:
        parse_domain(_domain({"type": "redis-ping"}))
    assert "unknown health check type 'redis-ping'" in info.value.issues[0].message


def test_expected_code_parser_rejects_reversed_ranges() -> None:
    assert parse_expected_code("3xx") == [(300, 399)]
    with pytest.raises(ValueError):
        parse_expected_code("299-200")
    assert HttpCheck(type="http").code_ok(200)


def test_every_builtin_check_model_has_exactly_one_probe_module() -> None:
    """A kind is a model in the BuiltinCheck union plus one module in pnr/probes/: nothing else to register."""
    from pnr.model import BUILTIN_CHECKS
    from pnr.probes import probe_kinds

    kinds = probe_kinds()
    assert set(kinds) == set(BUILTIN_CHECKS)
    for kind, probe_cls in kinds.items():
        assert probe_cls.__module__.startswith("pnr.probes."), (kind, probe_cls)


def _line_server(reply: Any) -> tuple[int, Any]:
    """A one-connection-at-a-time TCP server on 127.0.0.1: reads what the client sends, answers `reply(data)`."""
    import socket as socketlib
    import threading

    server = socketlib.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(0.3)
                try:
                    data = conn.recv(100)
                except TimeoutError:
                    data = b""
                answer = reply(data)
                if answer:
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], server


def test_socket_probe_sends_and_matches_the_reply() -> None:
    port, server = _line_server(lambda data: b"+PONG\r\n" if data.startswith(b"PING") else b"-ERR\r\n")
    try:
        check = _check({"type": "socket", "port_key": "80", "send": "PING\r\n", "expect": "^\\+PONG"})
        ok, seen = make_probe(check, Target("127.0.0.1", port)).attempt()
        assert ok and "+PONG" in seen
        wrong = _check({"type": "socket", "port_key": "80", "send": "HELLO\r\n", "expect": "^\\+PONG"})
        ok, seen = make_probe(wrong, Target("127.0.0.1", port)).attempt()
        assert not ok and "does not match" in seen and "-ERR" in seen
    finally:
        server.close()


def test_socket_probe_reads_a_banner_and_reports_silence_and_refusal() -> None:
    port, server = _line_server(lambda data: b"220 mail ready\r\n")
    try:
        banner = _check({"type": "socket", "port_key": "80", "expect": "^220 "})
        assert make_probe(banner, Target("127.0.0.1", port)).attempt()[0]
    finally:
        server.close()
    quiet_port, quiet = _line_server(lambda data: b"")
    try:
        silent = _check({"type": "socket", "port_key": "80", "expect": "x", "timeout_seconds": 0.5})
        ok, seen = make_probe(silent, Target("127.0.0.1", quiet_port)).attempt()
        assert not ok and "sent nothing" in seen
    finally:
        quiet.close()
    import socket as socketlib

    with socketlib.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        free = unused.getsockname()[1]
    ok, seen = make_probe(banner, Target("127.0.0.1", free)).attempt()
    assert not ok and "cannot talk to" in seen


def test_socket_check_needs_expect_and_a_port_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_domain(_domain({"type": "socket", "port_key": "80"}))
    assert [i.path for i in info.value.issues] == ["cpuxs.main.design_chunks[0].health_check.expect"]
    with pytest.raises(ConfigError) as info:
        make_plan(parse_domain(_domain({"type": "socket", "expect": "x"})))
    assert "port_key" in str(info.value)


def test_a_call_with_timeout_returns_raises_or_gives_up() -> None:
    from pnr.probes.base import CallTimedOut, call_with_timeout

    def refuse() -> str:
        raise RuntimeError("engine said no")

    assert call_with_timeout(lambda: ("healthy", "exit 0: ok"), 5) == ("healthy", "exit 0: ok")
    with pytest.raises(RuntimeError, match="engine said no"):
        call_with_timeout(refuse, 5)
    gate = threading.Event()
    with pytest.raises(CallTimedOut, match=r"within 0\.05s"):
        call_with_timeout(lambda: gate.wait(5), 0.05)
    gate.set()


def test_json_lookup_tells_a_missing_field_from_a_null_one() -> None:
    from pnr.probes.http import json_lookup

    data = json.loads('{"status": {"checks": [{"ok": true}, {"ok": null}]}}')
    assert json_lookup(data, ["status", "checks", 0, "ok"]) == (True, True)
    assert json_lookup(data, ["status", "checks", -1, "ok"]) == (True, None)
    assert json_lookup(data, ["status", "checks", 2]) == (False, None)
    assert json_lookup(data, ["status", "missing"]) == (False, None)
    assert json_lookup(data, ["status", 0]) == (False, None)
