"""Several Docker engines in one domain, without a daemon: the `engines` / `engine` config and its validation,
`${chunk:...}` references, and `EngineSet` (pre-flight, supervision, status, down) with fake engines."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests.exceptions
from conftest import write_config

from pnr.engines import LABEL_CHUNK, LABEL_DOMAIN, LABEL_MANAGED, ContainerState, Engine, EngineSet
from pnr.exceptions import ConfigError, EngineError, EngineUnreachable, NameInUse, RunError
from pnr.lifecycle import CpuxRun, DomainStatus, Phase, domain_status, tear_down_domain
from pnr.model import ChunkReference, PnR, expand_env, load_domain, parse_chunk_reference, parse_domain
from pnr.model.plan import Plan, load_plan, make_plan
from pnr.runtime import SignalStore
from tests.unit.fakes import FakeEngineBase

SECOND = {"host": "tcp://127.0.0.2:2375"}


def chunk(
    name: str,
    *,
    engine: str | None = None,
    ports: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    gate: dict[str, str] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "gatekeeper": {s: {"tv": tv} for s, tv in (gate or {"system_ready": "Y"}).items()},
        "flowout": {f"{name}_ok": {"tv": "Y"}},
        "container": {"name": f"c-{name}", "image": "img:1", "ports": ports or {}, "env": env or {}},
    }
    if engine is not None:
        data["engine"] = engine
    return data


def domain(*chunks: dict[str, Any], engines: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "d", "cpuxs": {"main": {"design_chunks": list(chunks)}}}
    if engines is not None:
        data["engines"] = engines
    return data


def problems(data: dict[str, Any], source: str = "f.json") -> list[str]:
    try:
        make_plan(parse_domain(data, source), source)
    except ConfigError as exc:
        return [issue.render(source) for issue in exc.issues]
    return []


# -- the config ------------------------------------------------------------------------------------------


def test_existing_configs_need_no_engines_and_run_on_the_default_engine() -> None:
    plan = make_plan(parse_domain(domain(chunk("a", ports={"80": "8080"}))))
    a = plan.chunks["a"]
    assert plan.domain.engines == {} and plan.domain.engine_of(a) == "default"
    assert plan.domain.port_bindings(a)["80"].host_ip == "127.0.0.1"


def test_an_engine_and_its_defaults() -> None:
    data = domain(
        chunk("db", engine="second", ports={"27017": "27017", "9000": "0.0.0.0:9000"}),
        chunk("api", engine="far", ports={"80": "8080"}),
        chunk("web", engine="named", ports={"80": "8081"}),
        engines={
            "second": SECOND,
            "far": {"host": "ssh://deploy@build-box"},
            "named": {"host": "unix:///run/other.sock", "address": "127.0.0.3"},
        },
    )
    plan = make_plan(parse_domain(data))
    dom = plan.domain
    assert dom.engines["second"].reach_address() == "127.0.0.2"
    assert dom.engines["far"].reach_address() == "build-box"
    assert dom.engines["named"].reach_address() == "127.0.0.3"
    # a port written without an address is published where its engine is reached (an IP), else 127.0.0.1
    db = dom.port_bindings(plan.chunks["db"])
    assert (db["27017"].host_ip, db["9000"].host_ip) == ("127.0.0.2", "0.0.0.0")
    assert dom.port_bindings(plan.chunks["api"])["80"].host_ip == "127.0.0.1"
    assert dom.port_bindings(plan.chunks["web"])["80"].host_ip == "127.0.0.3"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"host": "127.0.0.2:2375"}, "must start with unix://, tcp:// or ssh://"),
        ({"host": "tcp://127.0.0.2"}, "tcp://HOST:PORT"),
        ({"host": "unix://relative.sock"}, "unix:///absolute/path"),
        ({"host": "unix:///run/d.sock", "tls": {"verify": True}}, "tls is for tcp:// engines"),
        ({"host": "tcp://h:2376", "tls": {"cert": "c.pem"}}, "give both 'cert' and 'key'"),
        ({"host": "tcp://h:2376", "address": "http://h"}, "must be a host name or an IP address"),
        ({"host": "tcp://h:2376", "hots": "x"}, "unknown key 'hots'; did you mean 'host'?"),
    ],
)
def test_engine_specs_are_validated_with_their_path(spec: dict[str, Any], message: str) -> None:
    found = problems(domain(chunk("a", engine="e"), engines={"e": spec}))
    assert any(p.startswith("f.json: engines.e") and message in p for p in found), found


def test_unknown_engine_and_the_reserved_name_are_exit_2_problems_with_paths() -> None:
    found = problems(domain(chunk("a"), chunk("b", engine="nope"), engines={"default": SECOND}))
    assert any(
        p.startswith("f.json: cpuxs.main.design_chunks[1].engine: unknown engine 'nope' (engines: default)")
        for p in found
    ), found
    assert any(p.startswith("f.json: engines.default: 'default' is the environment's engine") for p in found), found
    # naming the environment's engine explicitly is the same as leaving engine out
    assert problems(domain(chunk("a", engine="default"))) == []


def test_tls_files_must_exist_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("ca.pem", "cert.pem"):
        (tmp_path / "certs" / name).write_text("x")
    tls = {"ca": "certs/ca.pem", "cert": "certs/cert.pem", "key": "certs/key.pem"}
    cfg = write_config(
        tmp_path / "c.json", domain(chunk("a", engine="e"), engines={"e": {"host": "tcp://h:2376", "tls": tls}})
    )
    with pytest.raises(ConfigError) as info:
        load_plan(str(cfg))
    assert [i.path for i in info.value.issues] == ["engines.e.tls.key"]
    assert "'certs/key.pem' not found" in str(info.value) and str(cfg) in str(info.value)
    (tmp_path / "certs" / "key.pem").write_text("x")
    assert load_plan(str(cfg)).base_dir == tmp_path.resolve()


def test_host_ports_clash_only_among_chunks_of_the_same_engine() -> None:
    engines = {"second": SECOND, "third": {"host": "tcp://127.0.0.2:2376", "address": "127.0.0.1"}}
    same_port_elsewhere = domain(
        chunk("a", ports={"80": "127.0.0.1:8080"}),
        chunk("b", engine="third", ports={"80": "127.0.0.1:8080"}),
        engines=engines,
    )
    assert problems(same_port_elsewhere) == []
    clash = domain(
        chunk("a", engine="second", ports={"80": "8080"}),
        chunk("b", engine="second", ports={"81": "8080"}),
        engines=engines,
    )
    assert problems(clash) == [
        "f.json: cpuxs.main.design_chunks[1].container.ports.81: host port 8080 is already published by chunk 'a'; "
        "pick another host port"
    ]


# -- ${chunk:...} ----------------------------------------------------------------------------------------


def test_reference_syntax() -> None:
    assert parse_chunk_reference("db.host") == ChunkReference("db", "host")
    assert parse_chunk_reference("db.port:27017") == ChunkReference("db", "port", "27017")
    assert parse_chunk_reference("my.db.port:8080/udp") == ChunkReference("my.db", "port", "8080/udp")
    assert str(ChunkReference("db", "port", "27017")) == "${chunk:db.port:27017}"
    for bad in ("db", "db.port", "db.address", ".host", "db.port:1:2"):
        with pytest.raises(ValueError, match="is not a chunk reference"):
            parse_chunk_reference(bad)


def test_references_are_checked_at_plan_time() -> None:
    env = {
        "A": "${chunk:nope.host}",
        "B": "${chunk:db.port:81}",
        "C": "${chunk:db}",
        "D": "${chunk:db.port:80/tcp}",  # the same port as "80"
    }
    found = problems(domain(chunk("db", ports={"80": "8080"}), chunk("web", env=env)))
    path = "f.json: cpuxs.main.design_chunks[1].container.env"
    assert found == [
        f"{path}.A: ${{chunk:nope.host}}: no chunk named 'nope' in this domain",
        f"{path}.B: ${{chunk:db.port:81}}: '81' is not a key of chunk db's ports (80)",
        f"{path}.C: ${{chunk:db}} is not a chunk reference: write ${{chunk:NAME.host}} or ${{chunk:NAME.port:KEY}} "
        "(KEY: a key of that chunk's container.ports)",
    ]


def test_references_resolve_with_a_resolver_and_stay_verbatim_without() -> None:
    data = domain(
        chunk("db", engine="second", ports={"27017": "27017"}),
        chunk(
            "web",
            env={
                "URL": "mongodb://${USER_NAME}@${chunk:db.host}:${chunk:db.port:27017}/x",
                "SELF": "${chunk:web.host}",
                "LEGACY": "${chunk:-plain default}",  # a host variable named `chunk` with a default, as before
            },
        ),
        engines={"second": SECOND},
    )
    plan = make_plan(parse_domain(data))
    web = plan.chunks["web"]
    verbatim = expand_env(web, "p", {"USER_NAME": "bob"})
    assert verbatim["URL"] == "mongodb://bob@${chunk:db.host}:${chunk:db.port:27017}/x"
    assert verbatim["LEGACY"] == "plain default"
    engines = EngineSet.for_plan(plan, default=FakeEngine("default"), factory=fake_factory({}))
    env = expand_env(web, "p", {"USER_NAME": "bob"}, resolve=engines.resolve)
    assert env["URL"] == "mongodb://bob@127.0.0.2:27017/x"
    assert env["SELF"] == "127.0.0.1"  # the default engine's address
    # a value taken from the host environment is not scanned again
    assert expand_env(web, "p", {"USER_NAME": "${chunk:db.host}"}, resolve=engines.resolve)["URL"].startswith(
        "mongodb://${chunk:db.host}@"
    )


# -- Engine ----------------------------------------------------------------------------------------------


def test_engine_locality_address_and_probe_host() -> None:
    unix = Engine(client=object(), host="unix:///run/x.sock", name="u")
    loop = Engine(client=object(), host="tcp://127.0.0.2:2375", name="two", address="127.0.0.2", port_ip="127.0.0.2")
    far = Engine(client=object(), host="tcp://10.1.2.3:2376", name="far")
    ssh = Engine(client=object(), host="ssh://me@box", name="box")
    assert [e.is_local() for e in (unix, loop, far, ssh)] == [True, True, False, False]
    assert [e.address for e in (unix, loop, far, ssh)] == ["127.0.0.1", "127.0.0.2", "10.1.2.3", "box"]
    assert loop.probe_host("127.0.0.2") == "127.0.0.2" and loop.probe_host("0.0.0.0") == "127.0.0.2"
    assert far.probe_host("127.0.0.1") == "10.1.2.3" and ssh.probe_host("0.0.0.0") == "box"


class _DeadClient:
    class api:  # the shape of docker-py's client.api
        @staticmethod
        def containers(**_: Any) -> Any:
            raise requests.exceptions.ConnectionError("HTTPConnectionPool: ... [Errno 111] Connection refused'))")

    def ping(self) -> None:
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")


def test_an_engine_that_does_not_answer_is_named() -> None:
    engine = Engine(client=_DeadClient(), host="tcp://127.0.0.2:2375", name="second")
    with pytest.raises(EngineUnreachable) as info:
        engine.owned_containers("d")
    assert info.value.engine == "second"
    assert str(info.value) == (
        "listing containers: cannot reach the Docker engine 'second' (tcp://127.0.0.2:2375; is dockerd running "
        "there? start it, or fix engines.second.host): [Errno 111] Connection refused"
    )


# -- EngineSet with fake engines ---------------------------------------------------------------------------


class FakeEngine(FakeEngineBase):
    """The surface of `Engine` that runs, status and down use."""

    def __init__(self, name: str, address: str = "127.0.0.1", *, port_ip: str = "127.0.0.1") -> None:
        self.name = name
        self.host = "" if name == "default" else f"tcp://{address}:2375"
        self.address = address
        self.port_ip = port_ip
        self.down = False
        self.hang = False
        self.containers: dict[str, ContainerState] = {}
        self.networks: list[str] = []
        self.images: list[str] = []
        self.calls: list[str] = []
        self.stops: list[tuple[str, float | None]] = []  # (container id, the grace asked for)

    def describe(self) -> str:
        return f"engine {self.name} ({self.host})"

    def _check(self, action: str) -> None:
        self.calls.append(action)
        if self.hang:
            time.sleep(5)
        if self.down:
            raise EngineUnreachable(f"{action}: cannot reach the Docker engine {self.name!r}", self.name)

    def ping(self) -> None:
        self._check("ping")

    def is_local(self) -> bool:
        return False  # no host-port pre-check against this machine

    def ensure_image(self, domain: str, chunk: Any, base_dir: Path, build: bool = False) -> str:
        self._check(f"image {chunk.name}")
        self.images.append(chunk.name)
        return "sha256:" + "a" * 64

    def ensure_network(self, domain: str) -> str:
        self._check("network")
        self.networks.append(f"pnr_{domain}")
        return f"pnr_{domain}"

    def container_names(self) -> dict[str, tuple[str, dict[str, str]]]:
        self._check("names")
        return {name: (c.id, c.labels) for name, c in self.containers.items()}

    def inspect(self, name_or_id: str) -> ContainerState | None:
        self._check("inspect")
        return next((c for c in self.containers.values() if name_or_id in (c.id, c.name)), None)

    def create_and_start(self, *, domain: str, chunk: Any, **_: Any) -> ContainerState:
        self._check(f"create {chunk.name}")
        if chunk.container.name in self.containers:
            raise NameInUse(f"a container named {chunk.container.name} exists already")
        labels = {LABEL_MANAGED: "true", LABEL_DOMAIN: domain, LABEL_CHUNK: chunk.name}
        state = ContainerState(f"id-{chunk.container.name}", chunk.container.name, "running", True, None, labels)
        self.containers[state.name] = state
        return state

    def owned_containers(self, domain: str) -> list[ContainerState]:
        self._check("list")
        return list(self.containers.values())

    def stop(self, cid: str, timeout: float | None = None) -> None:
        self._check("stop")
        self.stops.append((cid, timeout))

    def remove(self, cid: str) -> None:
        self._check("remove")
        self.containers = {k: v for k, v in self.containers.items() if v.id != cid}

    def owned_networks(self, domain: str) -> list[dict[str, str]]:
        self._check("networks")
        return [{"Id": n, "Name": n} for n in self.networks]

    def remove_network(self, net_id: str) -> None:
        self.networks.remove(net_id)

    def owned_volumes(self, domain: str) -> list[str]:
        return []

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        return ""


def fake_factory(made: dict[str, FakeEngine]) -> Any:
    def factory(name: str, spec: Any, base_dir: Path) -> FakeEngine:
        made[name] = FakeEngine(name, spec.reach_address(), port_ip=spec.port_ip())
        return made[name]

    return factory


def two_engine_plan(*extra: dict[str, Any]) -> Plan:
    data = domain(
        chunk("db", engine="second", ports={"27017": "27017"}),
        chunk("web", gate={"db_ok": "Y"}, env={"DB": "${chunk:db.host}:${chunk:db.port:27017}"}),
        *extra,
        engines={"second": SECOND, "unused": {"host": "tcp://127.0.0.9:2375"}},
    )
    return make_plan(parse_domain(data))


def test_engine_set_holds_the_engines_the_chunks_use() -> None:
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    default = FakeEngine("default")
    engines = EngineSet.for_plan(plan, default=default, factory=fake_factory(made))
    assert engines.names == ["second", "default"]  # `unused` is declared but no chunk runs on it
    assert engines.of(plan.chunks["db"]) is made["second"] and engines.of(plan.chunks["web"]) is default
    assert made["second"].port_ip == "127.0.0.2"
    # the environment's Engine given where one engine was expected: the config's engines join it
    real_default = Engine(client=object())
    coerced = real_default.engine_set(plan)
    assert coerced.names == ["second", "default"] and coerced["default"] is real_default
    assert coerced["second"].host == "tcp://127.0.0.2:2375" and coerced["second"].address == "127.0.0.2"
    # anything else (a fake) stands for every engine
    single = default.engine_set(plan)
    assert single.of(plan.chunks["db"]) is default


def test_unreachable_pings_in_parallel_and_bounds_a_hanging_engine() -> None:
    ok, dead, hung = FakeEngine("ok"), FakeEngine("dead"), FakeEngine("hung")
    dead.down, hung.hang = True, True
    engines = EngineSet({"ok": ok, "dead": dead, "hung": hung})
    began = time.monotonic()
    lost = engines.unreachable(timeout=0.5)
    assert time.monotonic() - began < 2
    assert lost == {
        "dead": "ping: cannot reach the Docker engine 'dead'",
        "hung": "engine hung (tcp://127.0.0.1:2375) did not answer within 0.5s",
    }
    with pytest.raises(EngineUnreachable) as info:
        engines.ping_all(["ok", "dead"])
    assert info.value.engine == "dead"
    hung.hang, hung.down = False, True
    with pytest.raises(EngineUnreachable, match=r"2 Docker engines do not answer:\n  engine dead"):
        engines.ping_all(timeout=0.5)


def make_run(tmp_path: Path, plan: Plan, engines: EngineSet, timeout: float = 30) -> CpuxRun:
    store = SignalStore(tmp_path / "rt", "d", scope=plan.signals_produced_in(["main"]))
    store.start_run({"system_ready": PnR(tv="Y")})
    return CpuxRun(
        plan=plan,
        cpux="main",
        store=store,
        engine=engines,
        config_path=str(tmp_path / "c.json"),
        timeout_seconds=timeout,
    )


def test_prepare_pings_every_engine_before_anything_and_works_per_engine(tmp_path: Path) -> None:
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    default = FakeEngine("default")
    run = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=default, factory=fake_factory(made)))
    run.prepare()
    second = made["second"]
    assert second.calls[0] == "ping" and default.calls[0] == "ping"
    assert (second.images, default.images) == (["db"], ["web"])
    assert second.networks == default.networks == ["pnr_d"]
    assert run.drivers["web"].env() == {"DB": "127.0.0.2:27017"}
    run.images = {"db": "sha256:1", "web": "sha256:2"}
    run.drivers["db"].start()
    assert list(second.containers) == ["c-db"] and not default.containers

    second.down = True  # an unreachable engine: nothing is started anywhere
    before = len(default.calls)
    fresh = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=default, factory=lambda *_: second))
    with pytest.raises(EngineUnreachable, match="cannot reach the Docker engine 'second'"):
        fresh.prepare()
    assert default.calls[before:] == ["ping"]


def test_a_name_free_at_prepare_is_created_without_an_inspect_and_one_taken_since_is_looked_at(tmp_path: Path) -> None:
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    default = FakeEngine("default")
    run = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=default, factory=fake_factory(made)))
    run.prepare()
    assert run.absent == {"db", "web"}
    run.drivers["web"].start()
    assert default.calls[-1] == "create web" and "inspect" not in default.calls
    # someone else's container took db's name after prepare: creating fails, pnr looks, and refuses to touch it
    second = made["second"]
    second.containers["c-db"] = ContainerState("id-theirs", "c-db", "running", True, None, {})
    with pytest.raises(EngineError, match=r"chunk db: .*pnr did not create"):
        run.drivers["db"].start()
    assert second.calls[-2:] == ["create db", "inspect"] and second.containers["c-db"].id == "id-theirs"
    # a chunk started again in the same run (e.g. by `pnr restart`) looks first, as before
    before = len(default.calls)
    run.drivers["web"].start()
    assert default.calls[before] == "inspect"


def test_the_supervisor_fails_the_run_quickly_when_an_engine_goes_away(tmp_path: Path, monkeypatch: Any) -> None:
    import pnr.lifecycle.cpux as cpux_module

    monkeypatch.setattr(cpux_module, "ENGINE_PING_EVERY", 0.05)
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    run = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=FakeEngine("default"), factory=fake_factory(made)))
    run.set_phase("db", Phase.READY)
    run.set_phase("web", Phase.PROBING)  # busy on the other engine: no stall
    threading.Timer(0.2, lambda: setattr(made["second"], "down", True)).start()
    began = time.monotonic()
    run.supervise(poll=0.02)
    assert time.monotonic() - began < 2  # not the run's 30 s deadline
    error = run.outcome_error()
    assert isinstance(error, EngineUnreachable) and error.engine == "second"
    assert str(error).startswith(
        "engine second (tcp://127.0.0.2:2375) stopped answering during the run of cpux main; chunks on it: db (ready)."
    )
    run.set_phase("web", Phase.WAITING)
    with pytest.raises(Exception, match="did not start: engine second"):
        run.wait_gate("web")
    assert run.progress["web"].phase == Phase.BLOCKED


def test_a_probe_whose_engine_goes_away_aborts_the_run_naming_it(tmp_path: Path) -> None:
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    run = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=FakeEngine("default"), factory=fake_factory(made)))
    run.images = {"db": "sha256:1", "web": "sha256:2"}
    made["second"].down = True
    with pytest.raises(RunError):
        run.drivers["db"].bring_up(lambda name: None)
    error = run.outcome_error()
    assert isinstance(error, EngineUnreachable) and "chunks on it: db (starting)" in str(error)


def started_on_two_engines(
    tmp_path: Path,
) -> tuple[Plan, EngineSet, FakeEngine, dict[str, FakeEngine], dict[str, ContainerState]]:
    """db on the engine "second", web on the default one, both started: (plan, engines, default, made, states)."""
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    default = FakeEngine("default")
    engines = EngineSet.for_plan(plan, default=default, factory=fake_factory(made))
    run = make_run(tmp_path, plan, engines)
    run.prepare()
    run.images = {"db": "sha256:1", "web": "sha256:2"}
    states = {name: run.drivers[name].start()[0] for name in ("db", "web")}
    return plan, engines, default, made, states


def test_status_and_down_with_an_engine_that_does_not_answer(tmp_path: Path) -> None:
    plan, engines, default, made, _ = started_on_two_engines(tmp_path)
    second = made["second"]
    second.down = True

    status = domain_status(plan, engines, tmp_path / "rt")
    assert status.every_engine_answered is False and status.to_json()["engine"] is False
    assert status.engines["second"].reachable is False and status.engines["default"].reachable is True
    assert status.chunks["db"].status == "unknown" and status.chunks["db"].engine == "second"
    assert "engine second (tcp://127.0.0.2:2375) does not answer" in (status.chunks["db"].detail or "")
    assert status.chunks["web"].container == "c-web" and status.chunks["web"].engine == "default"
    assert DomainStatus.from_json(json.loads(json.dumps(status.to_json()))) == status  # crosses a process as JSON

    told: list[tuple[str, str]] = []  # what `pnr down` prints as it goes, so also what went before the error
    with pytest.raises(EngineUnreachable) as info:
        tear_down_domain(plan, engines, tmp_path / "rt", on_removed=lambda kind, name: told.append((kind, name)))
    assert "removed 1 container(s) (c-web)" in str(info.value) and "engine second" in str(info.value)
    assert "run `pnr down` again once it answers" in str(info.value)
    assert not default.containers and list(second.containers) == ["c-db"]
    assert told == [("container", "c-web"), ("network", "pnr_d (engine default)")]

    second.down = False  # a later down finishes the job
    told.clear()
    report = tear_down_domain(plan, engines, tmp_path / "rt", on_removed=lambda kind, name: told.append((kind, name)))
    assert report["containers"] == ["c-db"] and report["networks"] == ["pnr_d (engine second)"]
    assert not second.containers
    assert told == [("container", "c-db"), ("network", "pnr_d (engine second)")]


def test_down_passes_its_stop_timeout_to_every_stop_and_none_without_it(tmp_path: Path) -> None:
    """`pnr down -t N` gives each container N seconds, whatever its stop_grace_period_seconds; without -t the
    engine's stop uses the container's own (None here)."""
    plan, engines, default, made, _ = started_on_two_engines(tmp_path)
    tear_down_domain(plan, engines, tmp_path / "rt", stop_timeout=0)
    assert default.stops == [("id-c-web", 0)] and made["second"].stops == [("id-c-db", 0)]

    plan, engines, default, made, _ = started_on_two_engines(tmp_path)
    tear_down_domain(plan, engines, tmp_path / "rt")
    assert default.stops == [("id-c-web", None)] and made["second"].stops == [("id-c-db", None)]


def test_status_after_a_bring_up_takes_its_containers_from_the_run_and_asks_no_engine(tmp_path: Path) -> None:
    plan, engines, default, made, known = started_on_two_engines(tmp_path)
    default.down = made["second"].down = True  # would be "unknown" if asked
    status = domain_status(plan, engines, tmp_path / "rt", known)
    assert status.every_engine_answered is True
    assert {n: c.container for n, c in status.chunks.items()} == {"db": "c-db", "web": "c-web"}
    # without the run's knowledge (or when it does not cover every chunk) the engines are asked
    partial = domain_status(plan, engines, tmp_path / "rt", {"db": known["db"]})
    assert partial.every_engine_answered is False and partial.chunks["db"].status == "unknown"


def test_down_with_no_engine_answering_is_an_error_that_touches_nothing(tmp_path: Path) -> None:
    plan = two_engine_plan()
    made: dict[str, FakeEngine] = {}
    default = FakeEngine("default")
    default.down = True
    engines = EngineSet.for_plan(plan, default=default, factory=fake_factory(made))
    made["second"].down = True
    with pytest.raises(EngineError, match="2 Docker engines do not answer"):
        tear_down_domain(plan, engines, tmp_path / "rt")


def test_load_domain_keeps_seed_configs_working(tmp_path: Path) -> None:
    from conftest import ROOT

    dom = load_domain(ROOT / "config" / "seed_example.json")
    assert dom.engines == {} and all(c.engine is None for _, c in dom.chunks())


class _SlowEndpointsApi:
    """remove_network: "has active endpoints" `busy` times (the engine still releasing removed containers)."""

    def __init__(self, busy: int) -> None:
        self.busy, self.calls = busy, 0

    def remove_network(self, net_id: str) -> None:
        import docker.errors

        self.calls += 1
        if self.calls <= self.busy:
            raise docker.errors.APIError(f"error while removing network: network {net_id} has active endpoints")


class _ApiClient:
    def __init__(self, api: Any) -> None:
        self.api = api


def test_removing_a_network_waits_for_endpoints_the_engine_still_releases() -> None:
    from pnr.exceptions import EngineError

    api = _SlowEndpointsApi(busy=3)
    Engine(client=_ApiClient(api), name="local").remove_network("n1", settle_seconds=5)
    assert api.calls == 4
    stuck = _SlowEndpointsApi(busy=10**6)  # another container really is attached: a clear error, after a while
    with pytest.raises(EngineError, match="active endpoints"):
        Engine(client=_ApiClient(stuck), name="local").remove_network("n1", settle_seconds=0.5)
